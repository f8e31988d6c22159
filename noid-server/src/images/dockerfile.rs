//! The Dockerfile subset noid builds: FROM (an image in the store), RUN, COPY, ADD (local
//! files), ENV, WORKDIR, USER, ENTRYPOINT, CMD and ARG, with comments, line continuations,
//! shell and JSON (exec) forms, and `$VAR`/`${VAR}` from ARG and ENV in the instructions
//! that take them. Anything else is refused, naming its line.

use super::store::ImageError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A command: the shell form runs through `/bin/sh -c`.
    Run(Vec<String>),
    /// Sources in the build context, and where they go in the image.
    Copy {
        sources: Vec<String>,
        dest: String,
    },
    Env(Vec<(String, String)>),
    Workdir(String),
    User(String),
    Entrypoint(Vec<String>),
    Cmd(Vec<String>),
    /// A build argument and its default.
    Arg(String, Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// The image it starts from.
    pub from: String,
    /// Each step with its line number.
    pub steps: Vec<(usize, Step)>,
}

fn err(line: usize, msg: impl std::fmt::Display) -> ImageError {
    ImageError::Invalid(format!("Dockerfile line {line}: {msg}"))
}

/// The logical lines: comments dropped, continuations joined; each with its first line number.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if current.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if current.is_empty() {
            start = i + 1;
        } else if line.starts_with('#') {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                out.push((start, std::mem::take(&mut current)));
            }
        }
    }
    if !current.trim().is_empty() {
        out.push((start, current));
    }
    out
}

/// A JSON array of strings (exec form), or None when `s` is not one.
fn json_form(s: &str) -> Option<Vec<String>> {
    s.trim_start()
        .starts_with('[')
        .then(|| serde_json::from_str::<Vec<String>>(s).ok())
        .flatten()
}

fn shell_or_exec(s: &str) -> Vec<String> {
    json_form(s).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), s.to_string()])
}

/// Replaces `$NAME` and `${NAME}` with their values (unknown ones with nothing).
pub fn substitute(s: &str, vars: &[(String, String)]) -> String {
    let lookup = |name: &str| {
        vars.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'{') {
            chars.next();
            let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
            out.push_str(&lookup(&name));
        } else {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            if name.is_empty() {
                out.push('$');
            } else {
                out.push_str(&lookup(&name));
            }
        }
    }
    out
}

/// `K=V K2="v 2"` or the old `K V` form.
fn env_pairs(line: usize, s: &str) -> Result<Vec<(String, String)>, ImageError> {
    let s = s.trim();
    if !s.contains('=') {
        let (k, v) = s
            .split_once(char::is_whitespace)
            .ok_or_else(|| err(line, "ENV needs KEY=VALUE"))?;
        return Ok(vec![(k.to_string(), v.trim().to_string())]);
    }
    let mut pairs = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once('=')
            .ok_or_else(|| err(line, "ENV needs KEY=VALUE"))?;
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(err(line, format!("bad ENV name {key:?}")));
        }
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| err(line, "unterminated quote in ENV"))?;
            (quoted[..end].to_string(), &quoted[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        pairs.push((key.to_string(), value));
        rest = next.trim_start();
    }
    Ok(pairs)
}

pub fn parse(text: &str) -> Result<Dockerfile, ImageError> {
    let mut from = None;
    let mut steps = Vec::new();
    for (line, l) in logical_lines(text) {
        let (word, rest) = l
            .split_once(char::is_whitespace)
            .unwrap_or((l.as_str(), ""));
        let rest = rest.trim();
        let instruction = word.to_ascii_uppercase();
        if from.is_none() && instruction != "FROM" && instruction != "ARG" {
            return Err(err(line, "the first instruction must be FROM"));
        }
        let step = match instruction.as_str() {
            "FROM" => {
                if from.is_some() {
                    return Err(err(
                        line,
                        "one FROM only (multi-stage builds are not supported)",
                    ));
                }
                let image = rest.split_whitespace().next().unwrap_or("");
                // `name:tag`: noid images have names only.
                let image = image.split(':').next().unwrap_or("").to_string();
                noid::names::validate_name("image", &image).map_err(|e| err(line, e))?;
                from = Some(image);
                continue;
            }
            "RUN" if !rest.is_empty() => Step::Run(shell_or_exec(rest)),
            "COPY" | "ADD" => {
                let mut parts: Vec<String> = json_form(rest)
                    .unwrap_or_else(|| rest.split_whitespace().map(String::from).collect());
                if let Some(flag) = parts.iter().find(|p| p.starts_with("--")) {
                    return Err(err(line, format!("{instruction} {flag} is not supported")));
                }
                if parts.len() < 2 {
                    return Err(err(
                        line,
                        format!("{instruction} needs a source and a destination"),
                    ));
                }
                if instruction == "ADD" && parts.iter().any(|p| p.contains("://")) {
                    return Err(err(
                        line,
                        "ADD of a URL is not supported: download it in a RUN",
                    ));
                }
                let dest = parts.pop().expect("two or more");
                Step::Copy {
                    sources: parts,
                    dest,
                }
            }
            "ENV" => Step::Env(env_pairs(line, rest)?),
            "WORKDIR" if !rest.is_empty() => Step::Workdir(rest.to_string()),
            "USER" if !rest.is_empty() => Step::User(rest.to_string()),
            "ENTRYPOINT" => Step::Entrypoint(shell_or_exec(rest)),
            "CMD" => Step::Cmd(shell_or_exec(rest)),
            "ARG" if !rest.is_empty() => match rest.split_once('=') {
                Some((k, v)) => Step::Arg(k.trim().to_string(), Some(v.trim().to_string())),
                None => Step::Arg(rest.to_string(), None),
            },
            "RUN" | "WORKDIR" | "USER" | "ARG" => {
                return Err(err(line, format!("{instruction} needs an argument")))
            }
            other => {
                return Err(err(
                    line,
                    format!(
                        "unknown or unsupported instruction {other:?} (noid builds FROM, RUN, \
                         COPY, ADD, ENV, WORKDIR, USER, ENTRYPOINT, CMD, ARG)"
                    ),
                ))
            }
        };
        steps.push((line, step));
    }
    let from = from.ok_or_else(|| ImageError::Invalid("the Dockerfile has no FROM".into()))?;
    Ok(Dockerfile { from, steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subset_parses() {
        let d = parse(
            "# a comment\nARG V=1\nFROM py:latest\nRUN apt-get update && \\\n    echo hi\n\
             RUN [\"python3\", \"-c\", \"print(1)\"]\nCOPY app.py /srv/\nADD a b /dst/\n\
             ENV A=1 B=\"two words\"\nENV OLD style value\nWORKDIR /srv\nUSER app\n\
             ENTRYPOINT [\"python3\"]\nCMD app.py\n",
        )
        .unwrap();
        assert_eq!(d.from, "py");
        let steps: Vec<&Step> = d.steps.iter().map(|(_, s)| s).collect();
        assert_eq!(steps[0], &Step::Arg("V".into(), Some("1".into())));
        assert_eq!(
            steps[1],
            &Step::Run(vec![
                "/bin/sh".into(),
                "-c".into(),
                "apt-get update &&  echo hi".into()
            ])
        );
        assert_eq!(
            steps[2],
            &Step::Run(vec!["python3".into(), "-c".into(), "print(1)".into()])
        );
        assert_eq!(
            steps[4],
            &Step::Copy {
                sources: vec!["a".into(), "b".into()],
                dest: "/dst/".into()
            }
        );
        assert_eq!(
            steps[5],
            &Step::Env(vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into())
            ])
        );
        assert_eq!(
            steps[6],
            &Step::Env(vec![("OLD".into(), "style value".into())])
        );
        assert_eq!(
            d.steps[1].0, 4,
            "line numbers of continued lines are their first"
        );
    }

    #[test]
    fn what_is_not_in_the_subset_names_its_line() {
        for (text, needle) in [
            (
                "FROM py\nHEALTHCHECK CMD true\n",
                "line 2: unknown or unsupported instruction \"HEALTHCHECK\"",
            ),
            ("RUN true\n", "first instruction must be FROM"),
            ("FROM py\nFROM py\n", "one FROM only"),
            (
                "FROM py\nCOPY --chown=1 a b\n",
                "--chown=1 is not supported",
            ),
            ("FROM py\nADD https://x/y /z\n", "URL"),
            ("FROM py\nCOPY onlyone\n", "source and a destination"),
            ("FROM Bad_Name\n", "image name"),
            ("# nothing\n", "no FROM"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn variables_substitute() {
        let vars = vec![("A".into(), "1".into()), ("B".into(), "x".into())];
        assert_eq!(substitute("$A/${B}/$C/$", &vars), "1/x//$");
    }
}
