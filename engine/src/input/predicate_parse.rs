//! The filter language of [`Predicate::parse`](super::predicate::Predicate::parse): a
//! recursive-descent parser over a handful of tokens.

use super::predicate::{CmpOp, Predicate};

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Literal(String),
    Op(CmpOp),
    And,
    Or,
    Open,
    Close,
}

/// Parses a whole filter.
pub fn parse(text: &str) -> Result<Predicate, String> {
    let tokens = tokenize(text)?;
    let mut at = 0;
    let predicate = or(&tokens, &mut at)?;
    match tokens.get(at) {
        None => Ok(predicate),
        Some(extra) => Err(format!("unexpected {extra:?} after a complete filter")),
    }
}

fn or(tokens: &[Token], at: &mut usize) -> Result<Predicate, String> {
    let mut all = vec![and(tokens, at)?];
    while tokens.get(*at) == Some(&Token::Or) {
        *at += 1;
        all.push(and(tokens, at)?);
    }
    Ok(if all.len() == 1 { all.remove(0) } else { Predicate::Or(all) })
}

fn and(tokens: &[Token], at: &mut usize) -> Result<Predicate, String> {
    let mut all = vec![atom(tokens, at)?];
    while tokens.get(*at) == Some(&Token::And) {
        *at += 1;
        all.push(atom(tokens, at)?);
    }
    Ok(if all.len() == 1 { all.remove(0) } else { Predicate::And(all) })
}

fn atom(tokens: &[Token], at: &mut usize) -> Result<Predicate, String> {
    match tokens.get(*at) {
        Some(Token::Open) => {
            *at += 1;
            let inner = or(tokens, at)?;
            if tokens.get(*at) != Some(&Token::Close) {
                return Err("a `(` without its `)`".into());
            }
            *at += 1;
            Ok(inner)
        }
        Some(Token::Ident(column)) => {
            let op = match tokens.get(*at + 1) {
                Some(Token::Op(op)) => *op,
                other => return Err(format!("expected a comparison after `{column}`, found {other:?}")),
            };
            let value = match tokens.get(*at + 2) {
                Some(Token::Literal(v)) | Some(Token::Ident(v)) => v.clone(),
                other => return Err(format!("expected a value after `{column}`, found {other:?}")),
            };
            *at += 3;
            Ok(Predicate::cmp(column, op, value))
        }
        other => Err(format!("expected a column or `(`, found {other:?}")),
    }
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' | ')' => {
                tokens.push(if c == '(' { Token::Open } else { Token::Close });
                i += 1;
            }
            '\'' | '"' => {
                let (literal, next) = quoted(&chars, i)?;
                tokens.push(Token::Literal(literal));
                i = next;
            }
            '=' | '!' | '<' | '>' => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                let (op, len) = match two.as_str() {
                    "<=" => (CmpOp::LtEq, 2),
                    ">=" => (CmpOp::GtEq, 2),
                    "!=" | "<>" => (CmpOp::NotEq, 2),
                    "==" => (CmpOp::Eq, 2),
                    _ if c == '<' => (CmpOp::Lt, 1),
                    _ if c == '>' => (CmpOp::Gt, 1),
                    _ if c == '=' => (CmpOp::Eq, 1),
                    _ => return Err(format!("`{c}` is not an operator")),
                };
                tokens.push(Token::Op(op));
                i += len;
            }
            _ => {
                let start = i;
                while i < chars.len() && !chars[i].is_whitespace() && !"()'\"=!<>".contains(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                tokens.push(match word.to_ascii_lowercase().as_str() {
                    "and" => Token::And,
                    "or" => Token::Or,
                    _ if word.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') => {
                        Token::Literal(word)
                    }
                    _ => Token::Ident(word),
                });
            }
        }
    }
    Ok(tokens)
}

/// A quoted literal starting at `chars[start]` (a doubled quote stands for one); returns it
/// and the index after its closing quote.
fn quoted(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let quote = chars[start];
    let mut out = String::new();
    let mut i = start + 1;
    while i < chars.len() {
        if chars[i] == quote {
            if chars.get(i + 1) == Some(&quote) {
                out.push(quote);
                i += 2;
                continue;
            }
            return Ok((out, i + 1));
        }
        out.push(chars[i]);
        i += 1;
    }
    Err("a quoted value without its closing quote".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn and_binds_tighter_than_or_and_parentheses_group() {
        let p = parse("a < 3 and b = 'x y' or c >= -2.5").unwrap();
        let expected = Predicate::Or(vec![
            Predicate::And(vec![Predicate::cmp("a", CmpOp::Lt, "3"), Predicate::cmp("b", CmpOp::Eq, "x y")]),
            Predicate::cmp("c", CmpOp::GtEq, "-2.5"),
        ]);
        assert_eq!(p, expected);
        let grouped = parse("a<3 AND (b<>'it''s' OR c!=1)").unwrap();
        assert_eq!(
            grouped,
            Predicate::And(vec![
                Predicate::cmp("a", CmpOp::Lt, "3"),
                Predicate::Or(vec![
                    Predicate::cmp("b", CmpOp::NotEq, "it's"),
                    Predicate::cmp("c", CmpOp::NotEq, "1")
                ]),
            ])
        );
    }

    #[test]
    fn malformed_filters_say_what_is_wrong() {
        for (bad, says) in [
            ("a <", "expected a value"),
            ("a 3", "expected a comparison"),
            ("(a < 3", "without its `)`"),
            ("a < 'x", "closing quote"),
            ("a < 3 b", "unexpected"),
            ("and", "expected a column"),
        ] {
            let error = parse(bad).unwrap_err();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
