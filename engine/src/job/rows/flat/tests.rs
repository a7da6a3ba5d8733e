use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, FieldRef, Int64Type, TimeUnit, TimestampMillisecondType};
use serde::{Deserialize, Serialize};

use super::{FlatColumns, FlatRows};
use crate::job::rows::RowColumns;

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Click {
    user: i64,
    url: String,
    referrer: Option<String>,
    weight: f32,
    bot: bool,
    hops: u8,
}

fn clicks() -> Vec<Click> {
    vec![
        Click { user: -3, url: "/a".into(), referrer: None, weight: 0.5, bot: false, hops: 0 },
        Click { user: 7, url: "/ü".into(), referrer: Some("x".into()), weight: 2.0, bot: true, hops: 255 },
    ]
}

fn write<T: Serialize>(columns: &RowColumns, rows: &[T]) -> Vec<ArrayRef> {
    let mut flat = FlatColumns::new(columns.fields(), columns.serde_names()).expect("flat columns");
    for row in rows {
        flat.push(row).expect("push");
    }
    flat.finish().expect("finish")
}

fn read<T: for<'de> Deserialize<'de>>(columns: &RowColumns, arrays: &[ArrayRef]) -> Vec<T> {
    let rows = FlatRows::new(arrays, columns.serde_names().is_some()).expect("flat rows");
    (0..rows.len()).map(|i| T::deserialize(rows.row(i)).expect("row")).collect()
}

#[test]
fn a_struct_of_flat_fields_round_trips_and_matches_serde_arrow() {
    let columns = RowColumns::of::<Click>("row").unwrap();
    let arrays = write(&columns, &clicks());
    assert_eq!(read::<Click>(&columns, &arrays), clicks());
    // The same arrays serde_arrow writes.
    let item = columns.item_field(columns.fields());
    let wrapped: Vec<serde_arrow::utils::Item<Click>> =
        clicks().into_iter().map(serde_arrow::utils::Item).collect();
    let theirs = serde_arrow::to_arrow(&[item], &wrapped).unwrap();
    assert_eq!(columns.split(theirs[0].clone()).unwrap(), arrays);
}

#[test]
fn tuples_newtypes_and_scalars_round_trip() {
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Station(u32);
    let pairs = vec![(Station(4), "b".to_owned(), Some(1.5)), (Station(1), "a".to_owned(), None)];
    let columns = RowColumns::of::<(Station, String, Option<f64>)>("key").unwrap();
    let arrays = write(&columns, &pairs);
    assert_eq!(arrays[0].as_primitive::<arrow::datatypes::UInt32Type>().values().to_vec(), [4, 1]);
    assert_eq!(read::<(Station, String, Option<f64>)>(&columns, &arrays), pairs);
    let scalar = RowColumns::of::<Option<i64>>("value").unwrap();
    let arrays = write(&scalar, &[Some(3), None]);
    assert_eq!(read::<Option<i64>>(&scalar, &arrays), [Some(3), None]);
    let chars = RowColumns::of::<char>("value").unwrap();
    assert_eq!(read::<char>(&chars, &write(&chars, &['é', 'z'])), ['é', 'z']);
}

#[test]
fn an_integer_written_to_a_timestamp_column_takes_its_type() {
    let field: FieldRef = Arc::new(Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), false));
    let mut flat = FlatColumns::new(&[field], None).unwrap();
    flat.push(&1_700_000_000_000_i64).unwrap();
    let arrays = flat.finish().unwrap();
    assert_eq!(arrays[0].as_primitive::<TimestampMillisecondType>().value(0), 1_700_000_000_000);
}

#[test]
fn values_that_do_not_fit_their_column_are_refused_by_name() {
    let field: FieldRef = Arc::new(Field::new("hops", DataType::UInt8, false));
    let mut flat = FlatColumns::new(std::slice::from_ref(&field), None).unwrap();
    let e = flat.push(&300_i64).unwrap_err().to_string();
    assert!(e.contains("column `hops`") && e.contains("300"), "{e}");
    let e = flat.push(&None::<i64>).unwrap_err().to_string();
    assert!(e.contains("column `hops`") && e.contains("null"), "{e}");
    let e = flat.push(&1.5_f64).unwrap_err().to_string();
    assert!(e.contains("float"), "{e}");
}

#[test]
fn a_struct_that_writes_its_fields_out_of_order_is_refused_and_skipped_fields_are_null() {
    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Pair {
        a: i64,
        b: Option<i64>,
    }
    struct Swapped;
    impl Serialize for Swapped {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeStruct;
            let mut row = s.serialize_struct("Pair", 2)?;
            row.serialize_field("b", &1_i64)?;
            row.serialize_field("a", &2_i64)?;
            row.end()
        }
    }
    #[derive(Serialize)]
    struct Sparse {
        a: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        b: Option<i64>,
    }
    let columns = RowColumns::of::<Pair>("row").unwrap();
    let mut flat = FlatColumns::new(columns.fields(), columns.serde_names()).unwrap();
    let e = flat.push(&Swapped).unwrap_err().to_string();
    assert!(e.contains("field `b` was written where `a` belongs"), "{e}");
    let mut flat = FlatColumns::new(columns.fields(), columns.serde_names()).unwrap();
    flat.push(&Sparse { a: 1, b: None }).unwrap();
    flat.push(&Sparse { a: 2, b: Some(5) }).unwrap();
    let arrays = flat.finish().unwrap();
    assert_eq!(arrays[1].null_count(), 1);
    assert_eq!(arrays[1].as_primitive::<Int64Type>().value(1), 5);
}

#[test]
fn a_null_read_into_a_field_that_is_not_an_option_is_an_error_and_other_types_are_not_flat() {
    let arrays: Vec<ArrayRef> = vec![Arc::new(arrow::array::Int64Array::from(vec![Some(1), None]))];
    let rows = FlatRows::new(&arrays, false).unwrap();
    assert_eq!(i64::deserialize(rows.row(0)).unwrap(), 1);
    assert!(i64::deserialize(rows.row(1)).is_err());
    assert_eq!(Option::<i64>::deserialize(rows.row(1)).unwrap(), None);
    let list: ArrayRef = Arc::new(arrow::array::ListArray::new_null(
        Arc::new(Field::new_list_field(DataType::Int64, true)),
        1,
    ));
    assert!(FlatRows::new(&[list], false).is_none());
    let decimal = Arc::new(Field::new("d", DataType::Decimal128(10, 2), false));
    assert!(FlatColumns::new(&[decimal], None).is_none());
}

/// A row type whose `Deserialize` reads a map only (as a hand-written impl may).
struct MapOnly {
    supplier: i64,
    price: f64,
}

impl<'de> Deserialize<'de> for MapOnly {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = MapOnly;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of supplier and price")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<MapOnly, A::Error> {
                let (mut supplier, mut price) = (0, 0.0);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "supplier" => supplier = map.next_value()?,
                        _ => price = map.next_value()?,
                    }
                }
                Ok(MapOnly { supplier, price })
            }
        }
        d.deserialize_struct("MapOnly", &["supplier", "price"], Fields)
    }
}

#[test]
fn a_row_type_that_only_reads_as_a_map_takes_serde_arrow() {
    use crate::job::rows::{map_rows, row_schema};
    use crate::job::{Emitter, Mapper};
    let batch = arrow::array::RecordBatch::try_from_iter([
        ("supplier", Arc::new(arrow::array::Int64Array::from(vec![1, 2])) as ArrayRef),
        ("price", Arc::new(arrow::array::Float64Array::from(vec![1.5, 2.5])) as ArrayRef),
    ])
    .unwrap();
    // The flat path's sequence fails on the first row and the mapper falls back, with the
    // same result, for this batch and the next.
    let mut mapper: Box<dyn Mapper> =
        map_rows::<MapOnly, i64, f64, _>(|item, out| out.emit(item.supplier * 10, item.price));
    let mut out = Emitter::new(row_schema::<i64, f64>().schema().clone());
    mapper.map(&batch, &mut out).unwrap();
    mapper.map(&batch, &mut out).unwrap();
    let batches = out.take_batches();
    let keys: Vec<i64> =
        batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect();
    assert_eq!(keys, [10, 20, 10, 20]);
    let prices: Vec<f64> = batches
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<arrow::datatypes::Float64Type>().values().to_vec())
        .collect();
    assert_eq!(prices, [1.5, 2.5, 1.5, 2.5]);
}
