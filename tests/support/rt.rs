//! A private Request Tracker 5 (Debian `request-tracker5`), the ticket-system peer of the
//! intake benchmark: its own SQLite database, configuration, caches and outgoing mail in a
//! temporary directory, RT's standalone server on a free loopback port, and the "Everyone"
//! group allowed to create and reply to tickets in the queue General, so that
//! `rt-mailgate --queue General --action correspond` turns any mail into a ticket.
//! Autoreplies are written to an mbox file in the directory instead of being sent.
//! Nothing from /etc/request-tracker5 is read; dropping it stops the server.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = "/usr/share/request-tracker5/libexec/rt-server";
const SETUP_DATABASE: &str = "/usr/sbin/rt-setup-database-5";
const MAILGATE: &str = "/usr/bin/rt-mailgate-5";
pub const MISSING: &str = "request-tracker5 is not installed: run `apt-get install request-tracker5` (scripts/bench does this)";

/// A running private RT.
pub struct Rt {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

impl Rt {
    /// Whether the Debian package's programs are present.
    pub fn installed() -> bool {
        [SERVER, SETUP_DATABASE, MAILGATE]
            .iter()
            .all(|p| Path::new(p).is_file())
    }

    /// Creates the database and starts the server; an error names what failed (or the
    /// install step when RT is missing) instead of panicking, as RT is optional.
    pub fn start() -> Result<Rt, String> {
        if !Self::installed() {
            return Err(MISSING.to_string());
        }
        let dir = tempfile::Builder::new()
            .prefix("mticket-rt-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let root = dir.path().to_path_buf();
        for sub in ["config.d", "var", "mason", "sessions"] {
            fs::create_dir_all(root.join(sub)).map_err(|e| format!("mkdir {sub}: {e}"))?;
        }
        write(&root.join("acl.pl"), ACL)?;
        // The database does not depend on the port; write the configuration once for setup.
        write(&root.join("RT_SiteConfig.pm"), &site_config(&root, 0))?;
        setup_database(&root, &["--action", "init"])?;
        let acl = root.join("acl.pl");
        setup_database(
            &root,
            &["--action", "insert", "--datafile", &acl.to_string_lossy()],
        )?;
        // A port is picked by binding to port 0 and released before RT binds it; another
        // process could grab it in between, so retry a few times.
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = super::gateway::free_port();
            write(&root.join("RT_SiteConfig.pm"), &site_config(&root, port))?;
            match start_server(&root, port) {
                Ok(child) => return Ok(Rt { dir, child, port }),
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `rt-mailgate` for one mail (its stdin), to be spawned by the caller.
    pub fn mailgate_command(&self) -> Command {
        let mut cmd = Command::new(MAILGATE);
        cmd.args(["--url", &self.url(), "--queue", "General"])
            .args(["--action", "correspond"])
            // LWP honours proxy variables; the server is on loopback.
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY")
            .env("no_proxy", "127.0.0.1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Delivers one raw mail through `rt-mailgate`, as an MTA's alias would.
    pub fn mailgate(&self, mail: &[u8]) -> Result<(), String> {
        let mut child = self
            .mailgate_command()
            .spawn()
            .map_err(|e| format!("spawn {MAILGATE}: {e}"))?;
        // rt-mailgate reads all of stdin before it posts (and prints) anything.
        let written = child.stdin.take().expect("stdin").write_all(mail);
        let out = child
            .wait_with_output()
            .map_err(|e| format!("wait for {MAILGATE}: {e}"))?;
        written.map_err(|e| format!("write to {MAILGATE}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "rt-mailgate exited with {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Tickets in RT's database (Perl's DBD::SQLite comes with `rt5-db-sqlite`).
    pub fn ticket_count(&self) -> Result<usize, String> {
        let out = Command::new("perl")
            .args([
                "-MDBI",
                "-e",
                "my $db = DBI->connect(\"dbi:SQLite:dbname=$ARGV[0]\", '', '', { RaiseError => 1 });\
                 print $db->selectrow_array('SELECT COUNT(*) FROM Tickets');",
            ])
            .arg(self.dir.path().join("rt.db"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("perl: {e}"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| {
                format!(
                    "counting tickets failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })
    }

    /// What RT's server logged (warnings and errors).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        // SIGTERM: the server stops and reaps its preforked workers (a second or two);
        // then SIGKILL to the whole process group for anything left. Not SIGINT: as root,
        // rt-server's SIGINT handler chowns /var/lib/request-tracker5.
        let group = format!("-{}", self.child.id());
        let signal = |name: &str| {
            let _ = Command::new("kill")
                .args([name, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        signal("-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rights for the queue General, created by RT's own initial data.
const ACL: &str = "@ACL = (\n\
    { GroupDomain => 'SystemInternal', GroupType => 'Everyone', Queue => 'General', Right => 'CreateTicket' },\n\
    { GroupDomain => 'SystemInternal', GroupType => 'Everyone', Queue => 'General', Right => 'ReplyToTicket' },\n\
);\n1;\n";

fn site_config(root: &Path, port: u16) -> String {
    let q = |p: &str| perl_quote(&root.join(p).to_string_lossy());
    format!(
        "# Generated by tests/support/rt.rs: a private RT in {dir}.\n\
         Set($rtname, 'bench.rt');\n\
         Set($Organization, 'bench.rt');\n\
         Set($Timezone, 'UTC');\n\
         Set($WebDomain, '127.0.0.1');\n\
         Set($WebPort, {port});\n\
         Set($WebPath, '');\n\
         Set($DatabaseType, 'SQLite');\n\
         Set($DatabaseName, {db});\n\
         Set($CorrespondAddress, 'support@example.test');\n\
         Set($CommentAddress, 'support-comment@example.test');\n\
         Set($MailCommand, 'mbox');\n\
         Set($LogToSyslog, undef);\n\
         Set($LogToFile, undef);\n\
         Set($LogToSTDERR, 'error');\n\
         $RT::VarPath = {var};\n\
         $RT::MasonDataDir = {mason};\n\
         $RT::MasonSessionDir = {sessions};\n\
         1;\n",
        dir = root.display(),
        db = q("rt.db"),
        var = q("var"),
        mason = q("mason"),
        sessions = q("sessions"),
    )
}

fn perl_quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The environment that points RT's programs at the private configuration only.
fn rt_command(root: &Path, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("RT_SITE_CONFIG", root.join("RT_SiteConfig.pm"))
        .env("RT_SITE_CONFIG_DIR", root.join("config.d"))
        .current_dir(root)
        .stdin(Stdio::null());
    cmd
}

fn setup_database(root: &Path, args: &[&str]) -> Result<(), String> {
    let out = rt_command(root, SETUP_DATABASE)
        .args(args)
        .output()
        .map_err(|e| format!("spawn {SETUP_DATABASE}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "rt-setup-database {} failed ({}):\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start_server(root: &Path, port: u16) -> Result<Child, String> {
    let log = fs::File::create(root.join("server.log")).map_err(|e| format!("log: {e}"))?;
    let log2 = log.try_clone().map_err(|e| format!("log: {e}"))?;
    // Its own process group, so Drop can stop the server and all its workers at once.
    let mut child = rt_command(root, SERVER)
        .process_group(0)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("spawn {SERVER}: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "rt-server exited with {status}:\n{}",
                fs::read_to_string(root.join("server.log")).unwrap_or_default()
            ));
        }
        if answers_http(port) {
            return Ok(child);
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "rt-server did not answer on port {port} within 60 s; log:\n{}",
                fs::read_to_string(root.join("server.log")).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Any HTTP response from the server (the application is loaded before it listens).
fn answers_http(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let request = "HEAD / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    stream.read_exact(&mut buf).is_ok() && &buf == b"HTTP/"
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}
