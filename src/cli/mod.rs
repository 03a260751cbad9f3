//! The admin command line (clap). Every command works against the configured database,
//! also while `serve` runs. Secrets come from stdin or an environment variable, never
//! from an argument, and are never printed.
mod admin;
mod output;
mod tickets;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::store::Store;

#[derive(Parser, Debug)]
#[command(
    name = "mticket",
    version,
    about = "Mail gateway that turns shared mailboxes into a helpdesk"
)]
pub struct Cli {
    /// Configuration file (default: config/mticket.toml)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per run: the size of the biggest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway: intake, outbox and listeners
    Serve {
        /// Create a demo queue, agent and customers (if absent) and print how to try them
        #[arg(long)]
        demo: bool,
    },
    /// Create or update the database schema
    Migrate,
    /// Queues (Warteschlangen): the mailboxes the gateway serves
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Agents (Benutzer)
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Customers (Kunden) from the ERP's address book
    #[command(subcommand)]
    Customer(CustomerCmd),
    /// Documents (Belege) from the ERP
    #[command(subcommand)]
    Document(DocumentCmd),
    /// Tags
    #[command(subcommand)]
    Tag(TagCmd),
    /// Ticket statuses
    #[command(subcommand)]
    Status(StatusCmd),
    /// Templates (Vorlagen) for replies
    #[command(subcommand)]
    Template(TemplateCmd),
    /// Profiles: named saved filters
    #[command(subcommand)]
    Profile(ProfileCmd),
    /// Tickets
    #[command(subcommand)]
    Ticket(TicketCmd),
    /// Direct search (Direktsuche) by one field
    Search(SearchArgs),
    /// Tickets per queue and status, and opened per day over the last 7 days
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Gateway instances on this database, which of them polls which queue, and the outbox
    Instances {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug, Default, Clone)]
pub struct QueueArgs {
    /// Name of the queue, e.g. "Vertrieb"
    #[arg(long)]
    pub name: Option<String>,
    /// E-mail address customers write to
    #[arg(long)]
    pub address: Option<String>,
    /// Display name of the address (E-Mail-Friendly)
    #[arg(long)]
    pub friendly: Option<String>,
    /// POP3 server HOST:PORT of the mailbox (omit for a queue fed only by the inbound listener)
    #[arg(long, value_name = "HOST:PORT")]
    pub pop3: Option<String>,
    /// implicit (POP3S, default for port 995), starttls (STLS, default otherwise) or none (plain, only when you mean it)
    #[arg(long, value_name = "MODE")]
    pub pop3_tls: Option<String>,
    /// SMTP server HOST:PORT for autoresponses and replies
    #[arg(long, value_name = "HOST:PORT")]
    pub smtp: Option<String>,
    /// implicit (default for port 465), starttls (default otherwise) or none
    #[arg(long, value_name = "MODE")]
    pub smtp_tls: Option<String>,
    /// Login name of the mail account (POP3 and SMTP)
    #[arg(long)]
    pub login: Option<String>,
    /// Name of the environment variable that holds the account's password
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
    /// Extra CA certificate (PEM file) to trust for this queue's servers
    #[arg(long, value_name = "PEMFILE")]
    pub tls_ca: Option<PathBuf>,
    /// File with the autoresponder text (placeholders allowed); switches the autoresponder on
    #[arg(long, value_name = "FILE", conflicts_with = "no_autoresponder")]
    pub autoresponder_text_file: Option<PathBuf>,
    /// Switch the autoresponder on (with the default text unless a text is set)
    #[arg(long, conflicts_with = "no_autoresponder")]
    pub autoresponder: bool,
    /// Switch the autoresponder off
    #[arg(long)]
    pub no_autoresponder: bool,
    /// Quoting in replies: none, last, last3 or all
    #[arg(long, value_name = "POLICY")]
    pub reply_quote: Option<String>,
    /// Disabled queues are not polled and receive no new tickets
    #[arg(long, conflicts_with = "enabled")]
    pub disabled: bool,
    /// Enable a disabled queue
    #[arg(long)]
    pub enabled: bool,
    /// What a customer follow-up on a closed ticket does: reopen or new_ticket
    #[arg(long, value_name = "POLICY")]
    pub on_closed: Option<String>,
    /// @Briefanrede@ for tickets without a customer
    #[arg(long)]
    pub salutation: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// Add a queue
    Add(QueueArgs),
    /// Change a queue's settings
    Edit {
        /// Current name of the queue
        queue: String,
        #[command(flatten)]
        args: QueueArgs,
    },
    /// Delete a queue that holds no tickets
    Delete { name: String },
    /// List queues with the result of their last poll
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AgentCmd {
    /// Add an agent; the password is read from stdin
    Add {
        #[arg(long)]
        login: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        /// Queues the agent works in, comma separated
        #[arg(long, value_delimiter = ',')]
        queues: Vec<String>,
        /// Admins see every queue
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input (required)
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Change an agent's personal settings
    Set {
        login: String,
        /// The attachment reminder on the agent's replies (seed: "Anhangsprüfung")
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        attachment_check: Option<bool>,
    },
    /// List agents, with who is away until when
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set an agent's out-of-office: customers writing to its tickets get the note once per
    /// ticket, and the substitute watches those tickets. Times are the server's local time.
    Away {
        login: String,
        /// YYYY-MM-DD (from the start of that day) or YYYY-MM-DDTHH:MM; default: now
        #[arg(long, value_name = "WHEN")]
        from: Option<String>,
        /// YYYY-MM-DD (through the end of that day) or YYYY-MM-DDTHH:MM
        #[arg(long, value_name = "WHEN")]
        until: String,
        /// File with the note (placeholders allowed)
        #[arg(long, value_name = "FILE")]
        text_file: PathBuf,
        /// Login of the agent who stands in
        #[arg(long, value_name = "LOGIN")]
        substitute: Option<String>,
    },
    /// End an agent's out-of-office (or cancel a planned one)
    Back { login: String },
}

fn on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(format!("{s:?}: say on or off")),
    }
}

#[derive(Args, Debug, Default)]
pub struct CustomerArgs {
    #[arg(long)]
    pub number: String,
    #[arg(long, default_value = "")]
    pub company1: String,
    #[arg(long, default_value = "")]
    pub company2: String,
    #[arg(long, default_value = "")]
    pub salutation: String,
    #[arg(long, default_value = "")]
    pub first_name: String,
    #[arg(long, default_value = "")]
    pub last_name: String,
    #[arg(long, default_value = "")]
    pub street: String,
    #[arg(long, default_value = "")]
    pub house_no: String,
    #[arg(long, default_value = "")]
    pub zip: String,
    #[arg(long, default_value = "")]
    pub city: String,
    #[arg(long, default_value = "")]
    pub letter_salutation: String,
    /// E-mail addresses, separated by ';' or ','
    #[arg(long, default_value = "")]
    pub emails: String,
    /// Liefersperre
    #[arg(long)]
    pub delivery_block: bool,
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum CustomerCmd {
    /// Import customers from CSV (header: number,company1,company2,salutation,first_name,last_name,street,house_no,zip,city,letter_salutation,emails,delivery_block)
    Import { file: PathBuf },
    /// Add or update one customer
    Add(CustomerArgs),
    /// List customers
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one customer
    Show {
        number: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum DocumentCmd {
    /// Import documents from CSV (header: number,kind,date,customer_number,description)
    Import { file: PathBuf },
    /// List documents
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TagCmd {
    Add {
        name: String,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    Delete {
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum StatusCmd {
    /// Add a status that counts as open (--open) or closed (--closed)
    Add {
        name: String,
        #[arg(long, conflicts_with = "closed", required_unless_present = "closed")]
        open: bool,
        #[arg(long)]
        closed: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TemplateCmd {
    /// Add or replace a template from a file
    Add {
        name: String,
        #[arg(long)]
        file: PathBuf,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProfileCmd {
    /// Add or replace a saved filter, e.g. `profile add Mine "assignee:me status:open"`
    Add { name: String, filter: String },
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum TicketCmd {
    /// List tickets matching a filter, e.g. `queue:Vertrieb status:open since:7d`
    List {
        filter: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show a ticket with items, attachments, history and the customer's other tickets
    Show {
        number: i64,
        #[arg(long)]
        json: bool,
    },
    /// Merge ticket A into ticket B: A's items become older items of B
    Merge { from: i64, into: i64 },
    /// Assign a ticket to an agent (by login), or to nobody with `none`
    Assign {
        number: i64,
        #[arg(value_name = "LOGIN|none")]
        login: String,
        #[arg(long)]
        json: bool,
    },
    /// Set a ticket's status, by key (new, open, waiting, closed) or localized name
    Status {
        number: i64,
        status: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct SearchFields {
    /// Ticket number
    #[arg(long)]
    pub ticket: Option<i64>,
    /// Customer numbers, separated by comma or semicolon
    #[arg(long)]
    pub customer: Option<String>,
    /// Text in the ticket subject
    #[arg(long)]
    pub subject: Option<String>,
    /// Words in any mail or comment of the ticket (full text)
    #[arg(long)]
    pub content: Option<String>,
    /// E-mail address of the creator, a CC or the customer
    #[arg(long)]
    pub email: Option<String>,
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    #[command(flatten)]
    pub fields: SearchFields,
    #[arg(long)]
    pub json: bool,
}

/// Connects to the configured database and brings its schema up to date.
pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&config.database.url).await?;
    store.migrate().await?;
    Ok(store)
}

/// Runs an admin command (everything but `serve`).
pub async fn run(config: Config, command: Command) -> anyhow::Result<()> {
    let store = open_store(&config).await?;
    let result = match command {
        Command::Serve { .. } => unreachable!("serve is run by the binary"),
        Command::Migrate => {
            println!("database is up to date");
            Ok(())
        }
        Command::Queue(c) => admin::queue(&store, c).await,
        Command::Agent(c) => admin::agent(&store, c).await,
        Command::Customer(c) => admin::customer(&store, c).await,
        Command::Document(c) => admin::document(&store, c).await,
        Command::Tag(c) => admin::tag(&store, c).await,
        Command::Status(c) => admin::status(&store, c, config.locale).await,
        Command::Template(c) => admin::template(&store, c).await,
        Command::Profile(c) => admin::profile(&store, c).await,
        Command::Ticket(c) => tickets::ticket(&store, c).await,
        Command::Search(a) => tickets::search(&store, a).await,
        Command::Stats { json } => tickets::stats(&store, json).await,
        Command::Instances { json } => admin::instances(&store, json).await,
    };
    store.close().await;
    result
}
