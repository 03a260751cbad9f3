//! The admin command line against a running gateway: CSV imports with bad rows, every
//! direct-search field of the seed, statistics, and secrets kept out of output.
mod support;

use support::gateway::{Gateway, Options};

fn numbers(v: &serde_json::Value) -> Vec<i64> {
    let mut n: Vec<i64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["number"].as_i64().unwrap())
        .collect();
    n.sort();
    n
}

#[test]
fn imports_search_stats_and_secrets() {
    let mut gateway = Gateway::new(Options::default());
    let csv = gateway.path().join("customers.csv");
    std::fs::write(
        &csv,
        "number,company1,company2,salutation,first_name,last_name,street,house_no,zip,city,letter_salutation,emails,delivery_block\n\
         4711,Muster GmbH,,Herr,Max,Muster,Weg,1,10115,Berlin,Sehr geehrter Herr Muster,max@muster.example;einkauf@muster.example,0\n\
         4712,,,Frau,Erika,Beispiel,Gasse,2,80331,München,Sehr geehrte Frau Beispiel,erika@beispiel.example,ja\n\
         ,no number,,,,,,,,,,x@y.example,0\n\
         4713,Kaputt,,,,,,,,,,not-an-address,0\n\
         4714,Too,few\n",
    )
    .unwrap();
    let out = gateway.cli(&["customer", "import", csv.to_str().unwrap()]);
    assert!(!out.status.success(), "bad rows make the exit code fail");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 4") && err.contains("line 5") && err.contains("line 6"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 added"));
    // A re-import updates by number.
    std::fs::write(
        &csv,
        "number,company1,company2,salutation,first_name,last_name,street,house_no,zip,city,letter_salutation,emails,delivery_block\n\
         4711,Muster AG,,Herr,Max,Muster,Weg,1,10115,Berlin,Sehr geehrter Herr Muster,max@muster.example,1\n",
    )
    .unwrap();
    assert!(
        gateway
            .cli_ok(&["customer", "import", csv.to_str().unwrap()])
            .contains("1 updated")
    );
    let c = gateway.json(&["customer", "show", "4711"]);
    assert_eq!(c["company1"], "Muster AG");
    assert_eq!(c["delivery_block"], true);
    assert_eq!(c["emails"], serde_json::json!(["max@muster.example"]));

    let docs = gateway.path().join("documents.csv");
    std::fs::write(&docs, "number,kind,date,customer_number,description\nRE-1,invoice,2026-11-01,4711,Rechnung November\n,x,,,\n").unwrap();
    let out = gateway.cli(&["document", "import", docs.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"));
    assert_eq!(
        gateway
            .json(&["document", "list"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let out = gateway.cli_with(
        &[
            "queue",
            "add",
            "--name",
            "Support",
            "--address",
            "support@example.test",
            "--smtp",
            "127.0.0.1:1",
            "--login",
            "support",
            "--password-env",
            "Q_PW",
            "--no-autoresponder",
        ],
        &[("Q_PW", "very-secret-queue-password")],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gateway.add_queue(
        "Sales",
        "sales@example.test",
        None,
        None,
        &["--no-autoresponder"],
    );
    let out = gateway.cli_with(
        &[
            "agent",
            "add",
            "--login",
            "anna",
            "--name",
            "Anna",
            "--email",
            "anna@example.test",
            "--queues",
            "Support,Sales",
            "--password-stdin",
        ],
        &[],
        "agent-password-123\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    gateway.cli_ok(&["tag", "add", "Reklamation"]);
    gateway.cli_ok(&["status", "add", "Rückfrage", "--open"]);
    gateway.cli_ok(&["profile", "add", "Offen", "status:open queue:Support"]);
    assert!(
        !gateway
            .cli(&["profile", "add", "Kaputt", "nonsense:key"])
            .status
            .success()
    );
    for listing in [
        gateway.cli_ok(&["queue", "list", "--json"]),
        gateway.cli_ok(&["queue", "list"]),
        gateway.cli_ok(&["agent", "list", "--json"]),
    ] {
        assert!(
            !listing.contains("very-secret-queue-password")
                && !listing.contains("agent-password-123")
        );
        assert!(!listing.contains("argon2"), "{listing}");
    }

    gateway.start();
    gateway.customer_mail(
        "max@muster.example",
        "support@example.test",
        "Lieferung verspätet",
        "Die Lieferung mit Tracking ZX81 fehlt.",
    );
    gateway.customer_mail(
        "erika@beispiel.example",
        "support@example.test",
        "Rechnung falsch",
        "Betrag stimmt nicht.",
    );
    gateway.customer_mail(
        "fremd@other.example",
        "sales@example.test",
        "Angebot gewünscht",
        "Bitte ein Angebot für ZX81.",
    );
    gateway.stop();
    assert!(!gateway.log().contains("very-secret-queue-password"));

    let search = |args: &[&str]| {
        let mut a = vec!["search"];
        a.extend_from_slice(args);
        numbers(&gateway.json(&a))
    };
    assert_eq!(search(&["--ticket", "2"]), vec![2]);
    assert_eq!(search(&["--customer", "4711"]), vec![1]);
    assert_eq!(search(&["--customer", "4711,4712"]), vec![1, 2]);
    assert_eq!(search(&["--customer", "4711; 4712"]), vec![1, 2]);
    assert_eq!(search(&["--subject", "rechnung"]), vec![2]);
    assert_eq!(search(&["--content", "ZX81"]), vec![1, 3]);
    assert_eq!(search(&["--email", "erika@beispiel.example"]), vec![2]);
    assert!(search(&["--email", "nobody@nowhere.example"]).is_empty());

    assert_eq!(
        numbers(&serde_json::Value::Array(gateway.tickets(&["queue:Sales"]))),
        vec![3]
    );
    assert_eq!(
        numbers(&serde_json::Value::Array(
            gateway.tickets(&["status:open", "since:1d"])
        )),
        vec![1, 2, 3]
    );
    assert!(gateway.tickets(&["status:closed"]).is_empty());
    assert_eq!(
        numbers(&serde_json::Value::Array(
            gateway.tickets(&["customer:4712"])
        )),
        vec![2]
    );

    let stats = gateway.json(&["stats"]);
    assert_eq!(stats["total"], 3);
    assert_eq!(
        stats["per_queue"],
        serde_json::json!([["Sales", 1], ["Support", 2]])
    );
    assert!(
        stats["per_status"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["new", 3]))
    );
    let days = stats["opened_per_day"].as_array().unwrap();
    assert_eq!(days.len(), 7);
    assert_eq!(days[6][1], 3);

    gateway.cli_ok(&["ticket", "merge", "2", "1"]);
    let t = gateway.ticket(1);
    assert_eq!(t["items"].as_array().unwrap().len(), 2);
    assert!(
        gateway
            .cli_ok(&["ticket", "show", "1"])
            .contains("Lieferung verspätet")
    );
}

fn add_agent(gateway: &Gateway, login: &str, queues: &str) {
    let out = gateway.cli_with(
        &[
            "agent",
            "add",
            "--login",
            login,
            "--name",
            login,
            "--email",
            &format!("{login}@example.test"),
            "--queues",
            queues,
            "--password-stdin",
        ],
        &[],
        "agent-password-123\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn history<'a>(t: &'a serde_json::Value, field: &str) -> Vec<&'a serde_json::Value> {
    t["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["field"] == field)
        .collect()
}

#[test]
fn assign_and_status_from_the_command_line() {
    let mut gateway = Gateway::new(Options {
        locale: "de",
        ..Options::default()
    });
    gateway.add_queue(
        "Support",
        "support@example.test",
        None,
        None,
        &["--no-autoresponder"],
    );
    add_agent(&gateway, "anna", "Support");
    add_agent(&gateway, "ben", "Support");
    gateway.start();
    for subject in ["Drucker", "Toner"] {
        gateway.customer_mail(
            "kunde@kunde.example",
            "support@example.test",
            subject,
            "Geht nicht.",
        );
    }
    gateway.stop();

    let change = gateway.json(&["ticket", "assign", "1", "anna"]);
    assert_eq!(
        change,
        serde_json::json!({"number": 1, "field": "assignee", "old": "", "new": "anna", "changed": true})
    );
    let out = gateway.cli_ok(&["ticket", "assign", "1", "ben"]);
    assert!(out.contains("anna -> ben"), "{out}");
    let again = gateway.json(&["ticket", "assign", "1", "ben"]);
    assert_eq!(again["changed"], false);
    assert_eq!(gateway.tickets(&["assignee:ben"]).len(), 1);

    // Keys in any locale, localized names, admins' own statuses.
    gateway.cli_ok(&["status", "add", "Rückfrage", "--open"]);
    let change = gateway.json(&["ticket", "status", "1", "waiting"]);
    assert_eq!(
        (&change["old"], &change["new"]),
        (&"new".into(), &"waiting".into())
    );
    gateway.cli_ok(&["ticket", "status", "1", "geschlossen"]);
    assert_eq!(gateway.ticket(1)["status"], "closed");
    gateway.cli_ok(&["ticket", "status", "1", "Rückfrage"]);
    assert_eq!(gateway.ticket(1)["status"], "Rückfrage");
    assert_eq!(gateway.tickets(&["status:Rückfrage"]).len(), 1);

    let t = gateway.ticket(1);
    let assignees: Vec<(&str, &str, &str)> = history(&t, "assignee")
        .iter()
        .map(|h| {
            (
                h["actor"].as_str().unwrap(),
                h["old"].as_str().unwrap(),
                h["new"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(assignees, [("admin", "", "anna"), ("admin", "anna", "ben")]);
    let statuses: Vec<&str> = history(&t, "status")
        .iter()
        .map(|h| h["new"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["waiting", "closed", "Rückfrage"]);
    assert!(history(&t, "status").iter().all(|h| h["actor"] == "admin"));

    gateway.cli_ok(&["ticket", "assign", "1", "none"]);
    assert!(gateway.ticket(1)["assignee"].is_null());
    assert_eq!(gateway.tickets(&["assignee:none"]).len(), 2);

    let fails = |args: &[&str], want: &str| {
        let out = gateway.cli(args);
        assert!(!out.status.success(), "{args:?} must fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    };
    fails(&["ticket", "assign", "1", "nobody"], "no agent");
    fails(&["ticket", "assign", "9", "anna"], "no ticket #9");
    fails(&["ticket", "status", "1", "frobnicated"], "no status");
    fails(&["ticket", "status", "1", "merged"], "merge");
    gateway.cli_ok(&["ticket", "merge", "2", "1"]);
    fails(&["ticket", "assign", "2", "anna"], "merged into #1");
    fails(&["ticket", "status", "2", "open"], "merged into #1");
}

/// SQLite serves one gateway: a second `serve` on the same database is refused with the
/// reason, before it touches anything, and the first goes on; after the first stops (even
/// when killed), `serve` starts again. On PostgreSQL the database is no reason to refuse
/// (the second `serve` here fails only on the ports the first holds).
#[test]
fn a_second_serve_on_one_sqlite_database_is_refused_with_the_reason() {
    let mut gateway = Gateway::new(Options::default());
    gateway.add_queue("Support", "support@shop.test", None, None, &[]);
    gateway.start();
    let second = gateway.cli(&["serve"]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    let refused = stderr.contains("another `mticket serve` already runs on")
        && stderr.contains("SQLite serves one gateway instance")
        && stderr.contains("PostgreSQL");
    if gateway.db_url.starts_with("sqlite:") {
        assert!(refused, "{stderr}");
    } else {
        assert!(!refused, "{stderr}");
    }
    gateway.customer_mail(
        "kunde@example.test",
        "support@shop.test",
        "Still there?",
        "The first gateway still takes mail.",
    );
    assert_eq!(
        numbers(&gateway.json(&["search", "--subject", "still there"])),
        vec![1]
    );
    gateway.kill();
    gateway.start();
    gateway.stop();
}
