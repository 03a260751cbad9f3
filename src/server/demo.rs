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
    let queue = demo_queue(store, &address).await?;
    if store.agent_by_login(DEMO_LOGIN).await.is_err() {
        store
            .agent_add(&NewAgent {
                login: DEMO_LOGIN.into(),
                name: "Demo Agent".into(),
                email: format!("agent@{}", config.hostname),
                password_hash: password::hash(DEMO_PASSWORD)?,
                is_admin: true,
                queues: vec![queue],
            })
            .await?;
    }
    for c in &CUSTOMERS {
        if store.customer(c.number).await?.is_none() {
            store.customer_upsert(&c.customer()).await?;
        }
    }
    print_instructions(config, &address);
    Ok(())
}

/// The queue "Demo" at `address`, added unless it exists; its name.
async fn demo_queue(store: &Store, address: &str) -> anyhow::Result<String> {
    let queue = match store.queue_by_name("Demo").await {
        Ok(q) => q,
        Err(StoreError::NotFound(_)) => {
            store
                .queue_add(&QueueSettings {
                    name: Some("Demo".into()),
                    address: Some(address.to_string()),
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
    Ok(queue.name)
}

/// A demo customer: one German company, one private person, one British company.
struct DemoCustomer {
    number: &'static str,
    company: &'static str,
    salutation: &'static str,
    first_name: &'static str,
    last_name: &'static str,
    street: &'static str,
    house_no: &'static str,
    zip: &'static str,
    city: &'static str,
    letter_salutation: &'static str,
    email: &'static str,
}

const CUSTOMERS: [DemoCustomer; 3] = [
    DemoCustomer {
        number: "10001",
        company: "Beispiel GmbH",
        salutation: "Frau",
        first_name: "Erika",
        last_name: "Mustermann",
        street: "Hauptstraße",
        house_no: "1",
        zip: "10115",
        city: "Berlin",
        letter_salutation: "Sehr geehrte Frau Mustermann",
        email: "erika@example.com",
    },
    DemoCustomer {
        number: "10002",
        company: "",
        salutation: "Herr",
        first_name: "Max",
        last_name: "Muster",
        street: "Ringweg",
        house_no: "7",
        zip: "80331",
        city: "München",
        letter_salutation: "Sehr geehrter Herr Muster",
        email: "max@example.com",
    },
    DemoCustomer {
        number: "10003",
        company: "Acme Ltd",
        salutation: "",
        first_name: "Jane",
        last_name: "Doe",
        street: "Main Street",
        house_no: "12",
        zip: "SW1A 1AA",
        city: "London",
        letter_salutation: "Dear Ms Doe",
        email: "jane@example.org",
    },
];

impl DemoCustomer {
    fn customer(&self) -> Customer {
        Customer {
            number: self.number.into(),
            company1: self.company.into(),
            salutation: self.salutation.into(),
            first_name: self.first_name.into(),
            last_name: self.last_name.into(),
            street: self.street.into(),
            house_no: self.house_no.into(),
            zip: self.zip.into(),
            city: self.city.into(),
            letter_salutation: self.letter_salutation.into(),
            emails: vec![self.email.into()],
            ..Default::default()
        }
    }
}

/// How to try the demo: a customer's mail with swaks, the ticket list, the agent's answer.
fn print_instructions(config: &Config, address: &str) {
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
}
