//! Agent commands (README, "How submission behaves"): `#word args` lines at the very top of an agent's text. They
//! are read here and checked for form; names that only the store knows (a status, a
//! login, a queue, a tag, a template) are checked when the commands are applied. They
//! are removed from the text before anything is sent.
use chrono::NaiveDate;

use crate::core::model::Priority;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Status(String),
    Priority(Priority),
    Assign(Assignee),
    Queue(String),
    Tags(Changes),
    /// `None`: no due date.
    Due(Option<NaiveDate>),
    Billable(bool),
    Watch,
    Unwatch,
    Merge(i64),
    Link(String),
    Customer(String),
    Cc(Changes),
    Template(String),
    Force,
    NoAttachCheck,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    Login(String),
    Me,
    Nobody,
}

/// `+a -b`: what to add and what to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

/// A command line that cannot be applied; the whole mail is refused with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line} \"{text}\": {reason}")]
pub struct CommandError {
    /// 1-based, counted in the agent's text.
    pub line: usize,
    pub text: String,
    pub reason: String,
}

/// A command with the line it came from, so a value the store refuses can name it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    pub line: usize,
    pub text: String,
    pub command: Command,
}

impl CommandLine {
    /// The refusal of this line for a reason found when applying it.
    pub fn error(&self, reason: impl Into<String>) -> CommandError {
        CommandError {
            line: self.line,
            text: self.text.clone(),
            reason: reason.into(),
        }
    }
}

/// The commands at the top of `text` (blank lines between them allowed) and the text
/// after them. The block ends at the first line that is neither blank nor `#` followed
/// by a letter, so `#1 priority for us` is text.
pub fn split(text: &str) -> Result<(Vec<CommandLine>, &str), CommandError> {
    let mut commands = Vec::new();
    let mut rest = text;
    let mut line_no = 0;
    while !rest.is_empty() {
        let (line, after) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let line = line.trim_end_matches('\r').trim();
        let is_command = line
            .strip_prefix('#')
            .and_then(|l| l.chars().next())
            .is_some_and(|c| c.is_alphabetic());
        if !line.is_empty() && !is_command {
            break;
        }
        line_no += 1;
        if is_command {
            let command = parse_line(&line[1..]).map_err(|reason| CommandError {
                line: line_no,
                text: line.to_string(),
                reason,
            })?;
            commands.push(CommandLine {
                line: line_no,
                text: line.to_string(),
                command,
            });
        }
        rest = after;
    }
    Ok((commands, rest))
}

fn parse_line(line: &str) -> Result<Command, String> {
    let (word, args) = match line.split_once(char::is_whitespace) {
        Some((w, a)) => (w, a.trim()),
        None => (line, ""),
    };
    let word = word.to_lowercase();
    let needs = |what: &str| {
        if args.is_empty() {
            Err(format!("#{word} needs {what}"))
        } else {
            Ok(args.to_string())
        }
    };
    let alone = |c: Command| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(format!("#{word} takes no value"))
        }
    };
    match word.as_str() {
        "status" => needs("a status name").map(Command::Status),
        "priority" => Priority::parse_any(args)
            .map(Command::Priority)
            .ok_or_else(|| format!("#priority is low, medium or high, not {args:?}")),
        "assign" => match needs("a login, me or none")?.to_lowercase().as_str() {
            "me" => Ok(Command::Assign(Assignee::Me)),
            "none" => Ok(Command::Assign(Assignee::Nobody)),
            _ => Ok(Command::Assign(Assignee::Login(args.to_string()))),
        },
        "queue" => needs("a queue name").map(Command::Queue),
        "tag" => changes(args, "tag", |_| true).map(Command::Tags),
        "due" => match args.to_lowercase().as_str() {
            "none" => Ok(Command::Due(None)),
            _ => NaiveDate::parse_from_str(args, "%Y-%m-%d")
                .map(|d| Command::Due(Some(d)))
                .map_err(|_| format!("#due is YYYY-MM-DD or none, not {args:?}")),
        },
        "billable" => match args.to_lowercase().as_str() {
            "yes" | "ja" => Ok(Command::Billable(true)),
            "no" | "nein" => Ok(Command::Billable(false)),
            _ => Err(format!("#billable is yes or no, not {args:?}")),
        },
        "watch" => alone(Command::Watch),
        "unwatch" => alone(Command::Unwatch),
        "merge" => args
            .strip_prefix('#')
            .unwrap_or(args)
            .parse::<i64>()
            .ok()
            .filter(|n| *n > 0)
            .map(Command::Merge)
            .ok_or_else(|| format!("#merge needs a ticket number, not {args:?}")),
        "link" => needs("a document number").map(Command::Link),
        "customer" => needs("a customer number").map(Command::Customer),
        "cc" => changes(args, "address", |a| {
            a.contains('@') && !a.contains(char::is_whitespace)
        })
        .map(Command::Cc),
        "template" => needs("a template name").map(Command::Template),
        "force" => alone(Command::Force),
        "noattachcheck" => alone(Command::NoAttachCheck),
        _ => Err(format!(
            "unknown command #{word}; known: #status #priority #assign #queue #tag #due \
             #billable #watch #unwatch #merge #link #customer #cc #template #force #noattachcheck"
        )),
    }
}

/// `+a -b …`; every value must carry its sign and pass `valid`.
fn changes(args: &str, what: &str, valid: impl Fn(&str) -> bool) -> Result<Changes, String> {
    let mut c = Changes::default();
    for token in args.split_whitespace() {
        let (list, value) = match (token.strip_prefix('+'), token.strip_prefix('-')) {
            (Some(v), _) => (&mut c.add, v),
            (_, Some(v)) => (&mut c.remove, v),
            _ => return Err(format!("write +{token} to add or -{token} to remove")),
        };
        if value.is_empty() || !valid(value) {
            return Err(format!("{token:?} is not a valid {what}"));
        }
        list.push(value.to_string());
    }
    if c.add.is_empty() && c.remove.is_empty() {
        return Err(format!("needs +{what} or -{what}"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_at_the_top_are_read_and_taken_out() {
        let text = "\r\n#status waiting\r\n#PRIORITY hoch\r\n\r\n#tag +Reklamation -neu\r\n\
                    #assign me\r\n#due 2026-12-24\r\n#billable ja\r\n#merge #42\r\n\
                    #cc +chef@kunde.example -alt@kunde.example\r\n#force\r\nGuten Tag,\r\n#status is text here\r\n";
        let (commands, rest) = split(text).unwrap();
        assert_eq!(commands[1].line, 3);
        assert_eq!(commands[1].text, "#PRIORITY hoch");
        let commands: Vec<Command> = commands.into_iter().map(|c| c.command).collect();
        assert_eq!(
            commands,
            vec![
                Command::Status("waiting".into()),
                Command::Priority(Priority::High),
                Command::Tags(Changes {
                    add: vec!["Reklamation".into()],
                    remove: vec!["neu".into()]
                }),
                Command::Assign(Assignee::Me),
                Command::Due(NaiveDate::from_ymd_opt(2026, 12, 24)),
                Command::Billable(true),
                Command::Merge(42),
                Command::Cc(Changes {
                    add: vec!["chef@kunde.example".into()],
                    remove: vec!["alt@kunde.example".into()]
                }),
                Command::Force,
            ]
        );
        assert_eq!(rest, "Guten Tag,\r\n#status is text here\r\n");
    }

    #[test]
    fn text_without_commands_is_left_alone() {
        for text in ["Hallo\n#force", "#1 priority for us\n", "", "  \n"] {
            let (commands, rest) = split(text).unwrap();
            assert!(commands.is_empty(), "{text:?}");
            assert_eq!(rest, text.trim_start_matches([' ', '\n']), "{text:?}");
        }
    }

    #[test]
    fn a_bad_line_is_named_with_its_number() {
        let cases = [
            (
                "#status waiting\n#frobnicate now\n",
                2,
                "unknown command #frobnicate",
            ),
            ("#priority urgent\n", 1, "low, medium or high"),
            ("\n#due tomorrow\n", 2, "YYYY-MM-DD"),
            ("#tag Reklamation\n", 1, "+Reklamation"),
            ("#cc +nobody\n", 1, "not a valid address"),
            ("#force now\n", 1, "takes no value"),
            ("#merge x\n", 1, "ticket number"),
            ("#status\n", 1, "needs a status name"),
        ];
        for (text, line, reason) in cases {
            let e = split(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}");
            assert!(e.to_string().contains(reason), "{text:?}: {e}");
        }
    }
}
