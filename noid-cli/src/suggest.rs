//! "Did you mean" for a mistyped command, without the commands that lose data or stop work:
//! `noid destory web` must not teach the user to type `noid destroy web`.

use clap::error::{ContextKind, ContextValue, Error};

/// Commands never offered for a typo: they destroy VMs, roll a VM back, or stop what runs.
const NEVER_SUGGESTED: &[&str] = &["destroy", "rm", "restore", "stop", "kill"];

/// Drops the commands in `NEVER_SUGGESTED` from the error's suggestions (all of them, if
/// nothing else is left).
pub fn safe_suggestions(mut error: Error) -> Error {
    let Some(ContextValue::Strings(offered)) = error.get(ContextKind::SuggestedSubcommand) else {
        return error;
    };
    let kept: Vec<String> = offered
        .iter()
        .filter(|c| !NEVER_SUGGESTED.contains(&c.as_str()))
        .cloned()
        .collect();
    if kept.is_empty() {
        error.remove(ContextKind::SuggestedSubcommand);
    } else {
        error.insert(
            ContextKind::SuggestedSubcommand,
            ContextValue::Strings(kept),
        );
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    enum Cli {
        Destroy,
        Stop,
        Start,
    }

    fn offered(e: &Error) -> Option<Vec<String>> {
        match e.get(ContextKind::SuggestedSubcommand) {
            Some(ContextValue::Strings(s)) => Some(s.clone()),
            _ => None,
        }
    }

    #[test]
    fn destructive_commands_are_not_suggested() {
        // Of what clap offers, only the harmless commands are kept.
        let mut e = Cli::try_parse_from(["x", "sto"]).unwrap_err();
        assert!(offered(&e).is_some_and(|o| o.contains(&"stop".to_string())));
        let both = vec!["stop".to_string(), "start".to_string()];
        e.insert(
            ContextKind::SuggestedSubcommand,
            ContextValue::Strings(both),
        );
        let e = safe_suggestions(e);
        assert_eq!(offered(&e), Some(vec!["start".to_string()]));
        // Nothing harmless to offer: no tip at all.
        let e = safe_suggestions(Cli::try_parse_from(["x", "destory"]).unwrap_err());
        assert_eq!(offered(&e), None);
        let text = e.render().to_string();
        assert!(text.contains("unrecognized subcommand 'destory'") && !text.contains("tip:"));
    }
}
