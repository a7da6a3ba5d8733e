//! Filters on input columns: comparisons of a column with a literal, combined with `and`
//! and `or`. Parquet row groups whose statistics exclude a filter are not read, and only
//! the rows that pass it reach the mapper (see [`InputSpec::with_filter`](crate::input::InputSpec::with_filter)).
//!
//! ```text
//! l_shipdate <= '1998-09-02' and (l_returnflag = 'R' or l_quantity > 40)
//! ```
//!
//! Literals are written as text and converted to the column's type when compared (Arrow's
//! cast: numbers, decimals, dates, strings), so one filter fits files of different types.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, Scalar, StringArray};
use arrow::compute::kernels::{boolean, cmp};
use arrow::compute::{cast, is_not_null};
use arrow::datatypes::DataType;
use arrow::error::ArrowError;

/// A comparison operator.
///
/// ```
/// use gristmill::input::{CmpOp, Predicate};
///
/// assert_eq!(Predicate::parse("qty <> 0")?, Predicate::cmp("qty", CmpOp::NotEq, 0));
/// # Ok::<(), gristmill::input::PredicateError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=` or `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

/// A filter on input columns.
///
/// Given to [`InputSpec::with_filter`](crate::input::InputSpec::with_filter) or
/// [`InputSpec::with_pruning`](crate::input::InputSpec::with_pruning); parsed from text or
/// built:
///
/// ```
/// use std::sync::Arc;
///
/// use gristmill::arrow::array::{Float64Array, StringArray};
/// use gristmill::input::{CmpOp, Predicate};
/// use gristmill::prelude::*;
///
/// let parsed = Predicate::parse("flag = 'R' or (qty > 40 and flag != 'N')")?;
/// assert_eq!(parsed.columns(), ["flag", "qty"]);
/// let built = Predicate::Or(vec![
///     Predicate::cmp("flag", CmpOp::Eq, "R"),
///     Predicate::And(vec![Predicate::cmp("qty", CmpOp::Gt, 40), Predicate::cmp("flag", CmpOp::NotEq, "N")]),
/// ]);
/// assert_eq!(parsed, built);
///
/// let rows = RecordBatch::try_from_iter([
///     ("flag", Arc::new(StringArray::from(vec!["R", "A", "N"])) as _),
///     ("qty", Arc::new(Float64Array::from(vec![1.0, 50.0, 50.0])) as _),
/// ])?;
/// let passing = parsed.evaluate(&rows)?;
/// assert_eq!(passing.values().iter().collect::<Vec<_>>(), [true, true, false]);
/// # Ok::<(), gristmill::BoxError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Predicate {
    /// `column op literal`.
    Cmp {
        /// The column's name.
        column: String,
        /// The operator.
        op: CmpOp,
        /// The literal, as written; converted to the column's type when compared.
        value: String,
    },
    /// Every one holds.
    And(Vec<Predicate>),
    /// One at least holds.
    Or(Vec<Predicate>),
}

/// A filter that does not parse, or does not fit the data.
///
/// ```
/// use gristmill::input::Predicate;
///
/// let error = Predicate::parse("qty >").unwrap_err();
/// assert_eq!(error.filter, "qty >");
/// assert!(error.to_string().starts_with("filter `qty >`: "));
/// ```
#[derive(Debug, thiserror::Error)]
#[error("filter `{filter}`: {reason}")]
pub struct PredicateError {
    /// The filter as written (or the comparison at fault).
    pub filter: String,
    /// What is wrong.
    pub reason: String,
}

impl Predicate {
    /// `column op value`.
    pub fn cmp(column: &str, op: CmpOp, value: impl ToString) -> Predicate {
        Predicate::Cmp { column: column.to_owned(), op, value: value.to_string() }
    }

    /// Parses `a < 3 and (b = 'x' or c >= 2.5)`: comparisons of a column with a number or
    /// a quoted string, `and` binding tighter than `or`, parentheses.
    pub fn parse(text: &str) -> Result<Predicate, PredicateError> {
        super::predicate_parse::parse(text)
            .map_err(|reason| PredicateError { filter: text.to_owned(), reason })
    }

    /// The columns it reads, each once, in first-use order.
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        self.visit(&mut |column| {
            if !out.contains(&column) {
                out.push(column);
            }
        });
        out
    }

    fn visit<'a>(&'a self, f: &mut impl FnMut(&'a str)) {
        match self {
            Predicate::Cmp { column, .. } => f(column),
            Predicate::And(all) | Predicate::Or(all) => all.iter().for_each(|p| p.visit(f)),
        }
    }

    /// Which rows of `batch` pass (a null comparison does not); `batch` holds every column
    /// the filter reads, by name.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray, PredicateError> {
        match self {
            Predicate::Cmp { column, op, value } => {
                let values = batch.column_by_name(column).ok_or_else(|| PredicateError {
                    filter: self.to_string(),
                    reason: format!("no column `{column}` in the input"),
                })?;
                let values = undictionary(values).map_err(|e| self.error(e))?;
                let literal = literal(value, values.data_type()).map_err(|e| self.error(e))?;
                compare(&values, *op, &literal).map_err(|e| self.error(e))
            }
            Predicate::And(all) => fold(all, batch, boolean::and_kleene),
            Predicate::Or(all) => fold(all, batch, boolean::or_kleene),
        }
    }

    /// Which of the row groups (or pages) whose per-column `min` and `max` statistics
    /// `stats` gives may hold passing rows; unknown statistics may always.
    pub fn may_match(
        &self,
        groups: usize,
        stats: &dyn Fn(&str) -> Option<(ArrayRef, ArrayRef)>,
    ) -> Vec<bool> {
        match self {
            Predicate::Cmp { column, op, value } => {
                let bounds = stats(column).and_then(|(min, max)| cmp_may_match(&min, &max, *op, value).ok());
                match bounds {
                    // Unknown bounds (null statistics) may match.
                    Some(mask) => (0..groups).map(|i| !mask.is_valid(i) || mask.value(i)).collect(),
                    None => vec![true; groups],
                }
            }
            Predicate::And(all) => all.iter().fold(vec![true; groups], |acc, p| {
                acc.iter().zip(p.may_match(groups, stats)).map(|(a, b)| *a && b).collect()
            }),
            Predicate::Or(all) => all.iter().fold(vec![false; groups], |acc, p| {
                acc.iter().zip(p.may_match(groups, stats)).map(|(a, b)| *a || b).collect()
            }),
        }
    }

    fn error(&self, cause: ArrowError) -> PredicateError {
        PredicateError { filter: self.to_string(), reason: cause.to_string() }
    }
}

impl std::fmt::Display for Predicate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let join = |f: &mut std::fmt::Formatter<'_>, all: &[Predicate], word: &str| {
            let parts: Vec<String> = all.iter().map(|p| format!("({p})")).collect();
            write!(f, "{}", parts.join(word))
        };
        match self {
            Predicate::Cmp { column, op, value } => {
                let op = match op {
                    CmpOp::Eq => "=",
                    CmpOp::NotEq => "!=",
                    CmpOp::Lt => "<",
                    CmpOp::LtEq => "<=",
                    CmpOp::Gt => ">",
                    CmpOp::GtEq => ">=",
                };
                write!(f, "{column} {op} '{}'", value.replace('\'', "''"))
            }
            Predicate::And(all) => join(f, all, " and "),
            Predicate::Or(all) => join(f, all, " or "),
        }
    }
}

fn fold(
    all: &[Predicate],
    batch: &RecordBatch,
    combine: fn(&BooleanArray, &BooleanArray) -> Result<BooleanArray, ArrowError>,
) -> Result<BooleanArray, PredicateError> {
    let mut out: Option<BooleanArray> = None;
    for p in all {
        let next = p.evaluate(batch)?;
        out = Some(match out {
            None => next,
            Some(acc) => combine(&acc, &next).map_err(|e| p.error(e))?,
        });
    }
    Ok(out.unwrap_or_else(|| BooleanArray::from(vec![true; batch.num_rows()])))
}

/// A dictionary column as its values (comparisons take plain arrays).
fn undictionary(values: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    match values.data_type() {
        DataType::Dictionary(_, inner) => cast(values, inner),
        _ => Ok(values.clone()),
    }
}

/// The literal `text` as a one-value array of type `ty`.
fn literal(text: &str, ty: &DataType) -> Result<ArrayRef, ArrowError> {
    let converted = cast(&(Arc::new(StringArray::from(vec![text])) as ArrayRef), ty)?;
    if converted.is_null(0) {
        return Err(ArrowError::CastError(format!("`{text}` is not a value of type {ty}")));
    }
    Ok(converted)
}

fn compare(values: &ArrayRef, op: CmpOp, literal: &ArrayRef) -> Result<BooleanArray, ArrowError> {
    let scalar = Scalar::new(literal.clone());
    match op {
        CmpOp::Eq => cmp::eq(values, &scalar),
        CmpOp::NotEq => cmp::neq(values, &scalar),
        CmpOp::Lt => cmp::lt(values, &scalar),
        CmpOp::LtEq => cmp::lt_eq(values, &scalar),
        CmpOp::Gt => cmp::gt(values, &scalar),
        CmpOp::GtEq => cmp::gt_eq(values, &scalar),
    }
}

/// Per group: may a value within `[min, max]` satisfy `op value`? Null where unknown.
fn cmp_may_match(min: &ArrayRef, max: &ArrayRef, op: CmpOp, value: &str) -> Result<BooleanArray, ArrowError> {
    let (min, max) = (undictionary(min)?, undictionary(max)?);
    let literal = literal(value, min.data_type())?;
    let known = boolean::and(&is_not_null(&min)?, &is_not_null(&max)?)?;
    let may = match op {
        CmpOp::Lt => compare(&min, CmpOp::Lt, &literal)?,
        CmpOp::LtEq => compare(&min, CmpOp::LtEq, &literal)?,
        CmpOp::Gt => compare(&max, CmpOp::Gt, &literal)?,
        CmpOp::GtEq => compare(&max, CmpOp::GtEq, &literal)?,
        CmpOp::Eq => {
            boolean::and(&compare(&min, CmpOp::LtEq, &literal)?, &compare(&max, CmpOp::GtEq, &literal)?)?
        }
        // Excluded only when every value equals it.
        CmpOp::NotEq => boolean::not(&boolean::and(
            &compare(&min, CmpOp::Eq, &literal)?,
            &compare(&max, CmpOp::Eq, &literal)?,
        )?)?,
    };
    // Unknown bounds: null, which the caller reads as "may match".
    let nulls: Vec<Option<bool>> =
        (0..may.len()).map(|i| (known.value(i) && may.is_valid(i)).then(|| may.value(i))).collect();
    Ok(BooleanArray::from(nulls))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Date32Array, Float64Array, Int64Array};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, false),
            Field::new("d", DataType::Date32, false),
            Field::new("x", DataType::Float64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(1), Some(5), None, Some(9)])),
            Arc::new(StringArray::from(vec!["a", "b", "c", "it's"])),
            Arc::new(Date32Array::from(vec![10_000, 10_500, 10_591, 11_000])),
            Arc::new(Float64Array::from(vec![0.5, 1.5, 2.5, 3.5])),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn passing(filter: &str) -> Vec<bool> {
        let mask = Predicate::parse(filter).unwrap().evaluate(&batch()).unwrap();
        (0..mask.len()).map(|i| mask.is_valid(i) && mask.value(i)).collect()
    }

    #[test]
    fn rows_pass_by_the_column_s_own_type_and_nulls_do_not() {
        assert_eq!(passing("n > 3"), [false, true, false, true], "a null does not pass");
        assert_eq!(passing("n != 5"), [true, false, false, true]);
        assert_eq!(passing("s = 'it''s' or x < 1"), [true, false, false, true]);
        // Dates compare as dates: 1999-01-01 is day 10592.
        assert_eq!(passing("d <= '1999-01-01' and x >= 1.5"), [false, true, true, false]);
        assert_eq!(passing("(n < 2 or n > 8) and s != 'a'"), [false, false, false, true]);
    }

    #[test]
    fn a_filter_that_does_not_fit_the_data_is_an_error_naming_it() {
        let unknown = Predicate::parse("zz = 1").unwrap().evaluate(&batch()).unwrap_err();
        assert!(unknown.to_string().contains("no column `zz`"), "{unknown}");
        let bad = Predicate::parse("n < 'abc'").unwrap().evaluate(&batch()).unwrap_err();
        assert!(bad.to_string().contains("n < 'abc'"), "{bad}");
    }

    #[test]
    fn groups_are_excluded_only_when_their_bounds_rule_the_filter_out() {
        // Three groups of `n`: [1, 4], [5, 9], unknown.
        let min: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), Some(5), None]));
        let max: ArrayRef = Arc::new(Int64Array::from(vec![Some(4), Some(9), None]));
        let stats = |column: &str| (column == "n").then(|| (min.clone(), max.clone()));
        let may = |filter: &str| Predicate::parse(filter).unwrap().may_match(3, &stats);
        assert_eq!(may("n < 5"), [true, false, true]);
        assert_eq!(may("n >= 5"), [false, true, true]);
        assert_eq!(may("n = 4"), [true, false, true]);
        assert_eq!(may("n = 7 or n = 2"), [true, true, true]);
        assert_eq!(may("n > 100 and m = 1"), [false, false, true], "no statistics for m: may match");
        assert_eq!(may("n != 3"), [true, true, true]);
        assert_eq!(may("n > 9 or n < 1"), [false, false, true]);
    }
}
