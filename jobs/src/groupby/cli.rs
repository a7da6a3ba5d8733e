//! The aggregate flags `--sum`, `--mean` and `--count`, kept in command-line order.
//!
//! Derived clap arguments would give one list per flag and lose how `--sum` and `--mean`
//! interleave; the output's columns follow the command line, as a `SELECT` list does, so
//! [`AggregateFlags`] reads the flags' positions from clap's matches.

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};
use serde::{Deserialize, Serialize};

use super::Aggregate;

/// The aggregates named on the command line, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AggregateFlags(pub Vec<Aggregate<String>>);

impl FromArgMatches for AggregateFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut found: Vec<(usize, Aggregate<String>)> = Vec::new();
        for (id, make) in [("sum", Aggregate::Sum as fn(String) -> _), ("mean", Aggregate::Mean)] {
            if let (Some(values), Some(indices)) = (matches.get_many::<String>(id), matches.indices_of(id)) {
                found.extend(indices.zip(values).map(|(i, v)| (i, make(v.clone()))));
            }
        }
        if matches.get_flag("count") {
            let index = matches.index_of("count").unwrap_or(usize::MAX);
            found.push((index, Aggregate::Count));
        }
        found.sort_by_key(|(i, _)| *i);
        Ok(AggregateFlags(found.into_iter().map(|(_, a)| a).collect()))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for AggregateFlags {
    fn augment_args(command: Command) -> Command {
        let column = |id: &'static str, help: &'static str| {
            Arg::new(id).long(id).value_name("COLUMN").action(ArgAction::Append).help(help)
        };
        command
            .arg(column(
                "sum",
                "Output the sum of COLUMN per group, named COLUMN (repeatable): Int64 for signed \
                 integers, UInt64 for unsigned ones, Float64 for floats; null values are skipped, \
                 a group without a non-null value gets null",
            ))
            .arg(column(
                "mean",
                "Output the mean of COLUMN per group, named COLUMN, as Float64 (repeatable); nulls \
                 are skipped as by --sum",
            ))
            .arg(
                Arg::new("count")
                    .long("count")
                    .action(ArgAction::SetTrue)
                    .help("Output the number of rows per group, named count (Int64)"),
            )
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        aggregates: AggregateFlags,
    }

    fn parse(args: &[&str]) -> Vec<Aggregate<String>> {
        Cli::try_parse_from([&["groupby"], args].concat()).unwrap().aggregates.0
    }

    #[test]
    fn aggregates_keep_command_line_order() {
        let s = |c: &str| c.to_owned();
        assert_eq!(
            parse(&["--mean", "v3", "--count", "--sum", "v1", "--mean", "v2"]),
            [Aggregate::Mean(s("v3")), Aggregate::Count, Aggregate::Sum(s("v1")), Aggregate::Mean(s("v2"))]
        );
        assert_eq!(parse(&["--sum=v1", "--sum", "v2"]), [Aggregate::Sum(s("v1")), Aggregate::Sum(s("v2"))]);
        assert!(parse(&[]).is_empty());
    }
}
