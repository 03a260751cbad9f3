//! A private Dovecot 2.3 instance for integration tests: POP3 (plain + STLS) and POP3S on
//! free loopback ports (with [`Dovecot::start_with_imap`] also IMAP and IMAPS), passwd-file
//! users, Maildir mailboxes filled directly on disk, and a certificate from a CA it generates
//! (trust it with `ca_pem()`). Dropping it stops Dovecot.

use std::fs;
use std::io::Read;
use std::net::TcpStream;
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const DOVECOT: &str = "/usr/sbin/dovecot";
const DH_PEM: &str = "/usr/share/dovecot/dh.pem";
const MISSING: &str = "dovecot not found: run `apt-get install dovecot-core dovecot-pop3d` (the test script does this)";

/// A running private Dovecot.
pub struct Dovecot {
    dir: tempfile::TempDir,
    child: Child,
    pop3_port: u16,
    pop3s_port: u16,
    /// IMAP (plain + STARTTLS) and IMAPS, when started with them.
    imap_ports: Option<(u16, u16)>,
    ca_pem: String,
    /// Owner of the mailboxes: `nobody` as root (Dovecot refuses uid 0), else ourselves.
    mail_uid: u32,
    mail_gid: u32,
    /// Password-file generation: each write gets a distinct mtime so Dovecot notices it.
    passwd_generation: AtomicU64,
}

static DELIVERED: AtomicU64 = AtomicU64::new(0);

impl Dovecot {
    /// Starts an instance and waits until both ports accept connections.
    pub fn start() -> Dovecot {
        Self::start_serving(false)
    }

    /// Like [`Dovecot::start`], also serving IMAP and IMAPS (needs `dovecot-imapd`).
    pub fn start_with_imap() -> Dovecot {
        Self::start_serving(true)
    }

    fn start_serving(imap: bool) -> Dovecot {
        let binary = which_dovecot();
        // Ports are picked by binding to port 0 and released just before Dovecot binds
        // them; another test could grab one in between, so retry a few times.
        let mut last_error = String::new();
        for _ in 0..5 {
            match Self::try_start(&binary, imap) {
                Ok(dovecot) => return dovecot,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start dovecot: {last_error}");
    }

    fn try_start(binary: &Path, imap: bool) -> Result<Dovecot, String> {
        let dir = tempfile::Builder::new()
            .prefix("mticket-dovecot-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let root = dir.path().to_path_buf();
        // Dovecot's unprivileged processes must traverse it (tempdirs are 0700).
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod: {e}"))?;

        let is_root = current_uid() == 0;
        let (mail_uid, mail_gid) = if is_root {
            (lookup_id("-u", "nobody"), lookup_id("-g", "nobody"))
        } else {
            (current_uid(), lookup_id("-g", ""))
        };

        let (ca_pem, cert_pem, key_pem) = super::sink::test_certificates();
        write(&root.join("ca.pem"), &ca_pem);
        write(&root.join("cert.pem"), &cert_pem);
        write(&root.join("key.pem"), &key_pem);
        fs::create_dir_all(root.join("users")).map_err(|e| format!("users: {e}"))?;
        fs::set_permissions(root.join("users"), fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod users: {e}"))?;
        fs::create_dir_all(root.join("home")).map_err(|e| format!("home: {e}"))?;
        fs::set_permissions(root.join("home"), fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("chmod home: {e}"))?;

        let [pop3_port, pop3s_port, imap_port, imaps_port] = super::gateway::free_ports();
        let imap_ports = imap.then_some((imap_port, imaps_port));
        let mut config = config_text(&root, pop3_port, pop3s_port, mail_uid, mail_gid, is_root);
        if let Some((imap_port, imaps_port)) = imap_ports {
            config = config.replace("protocols = pop3\n", "protocols = pop3 imap\n");
            config.push_str(&imap_service_text(imap_port, imaps_port, is_root));
        }
        let conf_path = root.join("dovecot.conf");
        write(&conf_path, &config);

        let log = fs::File::create(root.join("output.log")).map_err(|e| format!("log: {e}"))?;
        let log2 = log.try_clone().map_err(|e| format!("log: {e}"))?;
        // The master keeps stdout/stderr open forever: point them at a file, not a pipe.
        // Its own process group, so Drop can stop the master and all its children at once.
        let mut child = Command::new(binary)
            .process_group(0)
            .arg("-F")
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", binary.display()))?;

        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "dovecot exited with {status}:\n{}\n{}",
                    fs::read_to_string(root.join("output.log")).unwrap_or_default(),
                    fs::read_to_string(root.join("dovecot.log")).unwrap_or_default()
                ));
            }
            // A greeting on the plain port means the master finished starting up (it
            // ignores SIGTERM before that) and login processes are serving.
            let up = |port| TcpStream::connect(("127.0.0.1", port)).is_ok();
            let imap_up = imap_ports.is_none_or(|(p, ps)| up(ps) && greets_imap(p));
            if up(pop3s_port) && greets(pop3_port) && imap_up {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "dovecot did not open its ports within 15 s; log:\n{}",
                    fs::read_to_string(root.join("dovecot.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Dovecot {
            dir,
            child,
            pop3_port,
            pop3s_port,
            imap_ports,
            ca_pem,
            mail_uid,
            mail_gid,
            passwd_generation: AtomicU64::new(0),
        })
    }

    pub fn pop3_port(&self) -> u16 {
        self.pop3_port
    }

    pub fn pop3s_port(&self) -> u16 {
        self.pop3s_port
    }

    /// The IMAP port (plain, STARTTLS); only with [`Dovecot::start_with_imap`].
    pub fn imap_port(&self) -> u16 {
        self.imap_ports.expect("started without IMAP").0
    }

    /// The IMAPS port (implicit TLS); only with [`Dovecot::start_with_imap`].
    pub fn imaps_port(&self) -> u16 {
        self.imap_ports.expect("started without IMAP").1
    }

    /// The ids of this instance's processes named `comm` (`imap`, `pop3`, `auth`, …): those
    /// in the master's process group.
    pub fn processes(&self, comm: &str) -> Vec<u32> {
        let group = self.child.id();
        let Ok(procs) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        procs
            .flatten()
            .filter_map(|p| {
                let pid: u32 = p.file_name().to_str()?.parse().ok()?;
                let stat = fs::read_to_string(p.path().join("stat")).ok()?;
                let (head, rest) = stat.rsplit_once(')')?;
                let name = head.split_once('(')?.1;
                // After the name: state, ppid, pgrp.
                let pgrp: u32 = rest.split_whitespace().nth(2)?.parse().ok()?;
                (name == comm && pgrp == group).then_some(pid)
            })
            .collect()
    }

    /// PEM of the CA that signed the server certificate (valid for `localhost` and 127.0.0.1).
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The instance's directory (config, logs, mailboxes).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Dovecot's own log, for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Creates a user with an empty INBOX.
    pub fn add_user(&self, user: &str, pass: &str) {
        assert!(
            !matches!(user, "" | "." | "..")
                && !user.contains([':', '/', '\n'])
                && !pass.contains([':', '\n']),
            "user/password unusable in a passwd-file"
        );
        let maildir = self.maildir(user);
        for sub in ["", "new", "cur", "tmp"] {
            let path = maildir.join(sub);
            fs::create_dir_all(&path).expect("create maildir");
        }
        for path in [
            self.dir.path().join("home").join(user.to_lowercase()),
            maildir.clone(),
        ]
        .into_iter()
        .chain(["new", "cur", "tmp"].map(|s| maildir.join(s)))
        {
            chown(&path, Some(self.mail_uid), Some(self.mail_gid)).expect("chown maildir");
        }
        self.write_passwd(user, pass);
    }

    /// Changes a user's password. Dovecot stats a passwd-file at most once per second, so
    /// this waits for the next second to make sure the next login sees the new password.
    pub fn set_password(&self, user: &str, new: &str) {
        assert!(self.passwd_path(user).is_file(), "unknown user {user}");
        self.write_passwd(user, new);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        std::thread::sleep(Duration::from_millis(1050 - u64::from(now.subsec_millis())));
    }

    /// Puts a message into the user's INBOX (Maildir `tmp` then rename into `new`).
    pub fn deliver(&self, user: &str, raw: &[u8]) {
        let maildir = self.maildir(user);
        assert!(maildir.join("new").is_dir(), "unknown user {user}");
        let n = DELIVERED.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}.M{n}P{}.mticket-test",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            std::process::id()
        );
        let tmp = maildir.join("tmp").join(&name);
        fs::write(&tmp, raw).expect("write message");
        fs::rename(&tmp, maildir.join("new").join(&name)).expect("move message to new");
    }

    /// Puts a message into the user's INBOX as one a client has already seen: straight into
    /// `cur` with the Maildir flags `flags` (any of `S` seen, `R` answered, `F` flagged, `D`
    /// draft, `T` trashed; sorted here) and its size in the name, as Dovecot's own delivery
    /// names it. Names sort in the order of the calls, and Dovecot gives UIDs in that order.
    pub fn deliver_seen(&self, user: &str, raw: &[u8], flags: &str) {
        let maildir = self.maildir(user);
        assert!(maildir.join("cur").is_dir(), "unknown user {user}");
        let n = DELIVERED.fetch_add(1, Ordering::Relaxed);
        let mut sorted: Vec<char> = flags.chars().collect();
        sorted.sort_unstable();
        let flags: String = sorted.into_iter().collect();
        let name = format!(
            "{}.M{n}P{}.mticket-test,S={}",
            1_000_000_000 + n,
            std::process::id(),
            raw.len()
        );
        let tmp = maildir.join("tmp").join(&name);
        fs::write(&tmp, raw).expect("write message");
        fs::rename(&tmp, maildir.join("cur").join(format!("{name}:2,{flags}")))
            .expect("move message to cur");
    }

    pub fn deliver_many<'a>(&self, user: &str, raws: impl IntoIterator<Item = &'a [u8]>) {
        for raw in raws {
            self.deliver(user, raw);
        }
    }

    /// Messages in the user's INBOX (`new` + `cur`).
    pub fn count(&self, user: &str) -> usize {
        let maildir = self.maildir(user);
        ["new", "cur"]
            .iter()
            .map(|sub| {
                fs::read_dir(maildir.join(sub))
                    .map(|entries| entries.filter(|e| e.is_ok()).count())
                    .unwrap_or(0)
            })
            .sum()
    }

    /// Lowercase like the login name Dovecot derives `home=…/%u` from.
    fn maildir(&self, user: &str) -> PathBuf {
        self.dir
            .path()
            .join("home")
            .join(user.to_lowercase())
            .join("Maildir")
    }

    /// One passwd-file per user (`users/%u` in the config): a new user's file is read fresh
    /// on first login, with no once-per-second staleness.
    /// Lowercase because Dovecot's default `auth_username_format = %Lu` lowercases the login.
    fn passwd_path(&self, user: &str) -> PathBuf {
        self.dir.path().join("users").join(user.to_lowercase())
    }

    fn write_passwd(&self, user: &str, pass: &str) {
        let path = self.passwd_path(user);
        // Written aside and renamed so a concurrent login never reads half a file.
        let user = user.to_lowercase();
        let tmp = self.dir.path().join(format!("passwd-{user}.tmp"));
        write(&tmp, &format!("{user}:{{PLAIN}}{pass}::::::\n"));
        // Dovecot reloads when mtime (seconds) or size differ; a same-length password written
        // within the same second would otherwise go unnoticed.
        let generation = self.passwd_generation.fetch_add(1, Ordering::Relaxed);
        let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000 + generation);
        fs::File::options()
            .write(true)
            .open(&tmp)
            .and_then(|f| f.set_modified(mtime))
            .expect("set passwd mtime");
        fs::rename(&tmp, &path).expect("replace passwd");
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // A test instance has nothing to flush: SIGKILL to the whole process group (master,
        // login, auth, log, pop3 processes) is instant, while a SIGTERM shutdown of the
        // master takes about a second per instance.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn which_dovecot() -> PathBuf {
    let path = PathBuf::from(DOVECOT);
    if path.is_file() {
        return path;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("dovecot"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| panic!("{MISSING}"))
}

fn config_text(
    root: &Path,
    pop3_port: u16,
    pop3s_port: u16,
    uid: u32,
    gid: u32,
    is_root: bool,
) -> String {
    let r = root.display();
    let rootless = if is_root {
        String::new()
    } else {
        let user = Command::new("id")
            .arg("-un")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        format!(
            "default_login_user = {user}\ndefault_internal_user = {user}\n\
             default_internal_group = {user}\n"
        )
    };
    let login_chroot = if is_root { "" } else { "  chroot =\n" };
    format!(
        r#"# Generated by tests/support/dovecot.rs: standalone, includes nothing from /etc/dovecot.
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
info_log_path = {r}/dovecot.log
listen = 127.0.0.1
protocols = pop3
ssl = yes
ssl_cert = <{r}/cert.pem
ssl_key = <{r}/key.pem
ssl_dh = <{DH_PEM}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_max_userip_connections = 1000
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {r}/users/%u
}}
userdb {{
  driver = passwd-file
  args = {r}/users/%u
  default_fields = uid={uid} gid={gid} home={r}/home/%u
}}
{rootless}# Tests log in with wrong passwords on purpose; anvil's per-IP penalty would then
# delay every later login from 127.0.0.1 by seconds.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
{login_chroot}}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = {pop3s_port}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 2
{login_chroot}}}
"#
    )
}

/// The IMAP service, appended to [`config_text`]'s.
fn imap_service_text(imap_port: u16, imaps_port: u16, is_root: bool) -> String {
    let login_chroot = if is_root { "" } else { "  chroot =\n" };
    format!(
        r#"service imap-login {{
  inet_listener imap {{
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = {imaps_port}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 2
{login_chroot}}}
"#
    )
}

/// Whether an IMAP greeting (`* OK`) comes on `port`.
fn greets_imap(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).is_ok() && &buf == b"* OK"
}

fn greets(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 3];
    stream.read_exact(&mut buf).is_ok() && &buf == b"+OK"
}

fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn current_uid() -> u32 {
    lookup_id("-u", "")
}

/// `id -u NAME` / `id -g NAME` (empty name: ourselves); no libc dependency for two numbers.
fn lookup_id(flag: &str, name: &str) -> u32 {
    let mut cmd = Command::new("id");
    cmd.arg(flag);
    if !name.is_empty() {
        cmd.arg(name);
    }
    let out = cmd.output().expect("run id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("id {flag} {name} gave no number"))
}
