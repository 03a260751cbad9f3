//! `serve --demo`: a queue fed by the inbound listener, an agent and a few customers, so a
//! newcomer can send a mail with swaks and see a ticket a minute after installing.
use crate::config::Config;
use crate::core::model::Customer;
use crate::core::password;
use crate::store::{NewAgent, QueueSettings, Store, StoreError};

pub const DEMO_LOGIN: &str = "demo";
/// Known on purpose: the demo listens on loopback only and holds no real mail.
pub const DEMO_PASSWORD: &str = "demo-password";

pub async fn setup(store: &Store, config: &Config) -> anyhow::Result<()> {
    let address = format!("demo@{}", config.hostname);
    let queue = match store.queue_by_name("Demo").await {
        Ok(q) => q,
        Err(StoreError::NotFound(_)) => {
            store
                .queue_add(&QueueSettings {
                    name: Some("Demo".into()),
                    address: Some(address.clone()),
                    friendly_name: Some("mticket demo".into()),
                    // No upstream SMTP in the demo: autoresponses would have nowhere to go.
                    autoresponder: Some(false),
                    enabled: Some(true),
                    ..Default::default()
                })
                .await?
        }
        Err(e) => return Err(e.into()),
    };
    if store.agent_by_login(DEMO_LOGIN).await.is_err() {
        store
            .agent_add(&NewAgent {
                login: DEMO_LOGIN.into(),
                name: "Demo Agent".into(),
                email: format!("agent@{}", config.hostname),
                password_hash: password::hash(DEMO_PASSWORD)?,
                is_admin: true,
                queues: vec![queue.name.clone()],
            })
            .await?;
    }
    let customers = [
        (
            "10001",
            "Beispiel GmbH",
            "Frau",
            "Erika",
            "Mustermann",
            "Hauptstraße",
            "1",
            "10115",
            "Berlin",
            "Sehr geehrte Frau Mustermann",
            "erika@example.com",
        ),
        (
            "10002",
            "",
            "Herr",
            "Max",
            "Muster",
            "Ringweg",
            "7",
            "80331",
            "München",
            "Sehr geehrter Herr Muster",
            "max@example.com",
        ),
        (
            "10003",
            "Acme Ltd",
            "",
            "Jane",
            "Doe",
            "Main Street",
            "12",
            "SW1A 1AA",
            "London",
            "Dear Ms Doe",
            "jane@example.org",
        ),
    ];
    for (number, company, salutation, first, last, street, no, zip, city, letter, email) in
        customers
    {
        if store.customer(number).await?.is_none() {
            store
                .customer_upsert(&Customer {
                    number: number.into(),
                    company1: company.into(),
                    salutation: salutation.into(),
                    first_name: first.into(),
                    last_name: last.into(),
                    street: street.into(),
                    house_no: no.into(),
                    zip: zip.into(),
                    city: city.into(),
                    letter_salutation: letter.into(),
                    emails: vec![email.into()],
                    ..Default::default()
                })
                .await?;
        }
    }
    let inbound = if config.listen.inbound.is_empty() {
        "127.0.0.1:2525"
    } else {
        &config.listen.inbound
    };
    let submissions = if config.listen.submissions.is_empty() {
        "127.0.0.1:1465"
    } else {
        &config.listen.submissions
    };
    let agent_address = format!("agent@{}", config.hostname);
    println!(
        "\nmticket demo is ready.\n\n\
         Send a test mail as a known customer:\n\
         \x20 swaks --server {inbound} --from erika@example.com --to {address} \\\n\
         \x20       --header 'Subject: My first ticket' --body 'Hello, my parcel did not arrive.'\n\n\
         Then list the tickets (in another terminal, same folder):\n\
         \x20 mticket ticket list\n\
         \x20 mticket ticket show 1\n\n\
         Answer it as the demo agent through the submission port (the demo queue has no\n\
         upstream SMTP server: the reply is stored on the ticket and waits in the outbox):\n\
         \x20 swaks --server {submissions} --tls-on-connect --auth LOGIN --auth-user {DEMO_LOGIN} \\\n\
         \x20       --auth-password {DEMO_PASSWORD} --from {agent_address} --to erika@example.com \\\n\
         \x20       --header 'Subject: Re: [Demo #1] My first ticket' --body 'It is on its way.'\n\n\
         Demo agent: login {DEMO_LOGIN}, password {DEMO_PASSWORD}\n"
    );
    Ok(())
}
