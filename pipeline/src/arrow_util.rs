//! Small helpers to build and read the list columns of the shared schemas.

use std::sync::Arc;

use arrow_array::types::ArrowPrimitiveType;
use arrow_array::{Array, ArrayRef, ListArray, PrimitiveArray, RecordBatch};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{ArrowError, DataType, FieldRef, Schema};

/// The item field of list column `name` in `schema` (so built arrays match it exactly).
pub(crate) fn list_item(schema: &Schema, name: &str) -> Result<FieldRef, ArrowError> {
    match schema.field_with_name(name)?.data_type() {
        DataType::List(item) => Ok(item.clone()),
        other => Err(ArrowError::SchemaError(format!(
            "column {name} is {other}, not a list"
        ))),
    }
}

/// A list array from flat values and per-row lengths.
pub(crate) fn list_array<T: ArrowPrimitiveType>(
    item: FieldRef,
    values: Vec<T::Native>,
    lengths: &[usize],
) -> Result<ArrayRef, ArrowError> {
    let offsets = OffsetBuffer::<i32>::from_lengths(lengths.iter().copied());
    let values: ArrayRef = Arc::new(PrimitiveArray::<T>::from_iter_values(values));
    Ok(Arc::new(ListArray::try_new(item, offsets, values, None)?))
}

/// Column `name` of `batch` downcast to `A`.
pub(crate) fn column<'a, A: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<&'a A, ArrowError> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<A>())
        .ok_or_else(|| {
            ArrowError::SchemaError(format!("column {name} is missing or has another type"))
        })
}

/// List column `name` of `batch` with its values downcast to `A`: `(offsets, values)`.
pub(crate) fn list_column<'a, A: Array + 'static>(
    batch: &'a RecordBatch,
    name: &str,
) -> Result<(&'a [i32], &'a A), ArrowError> {
    let list: &ListArray = column(batch, name)?;
    let values = list.values().as_any().downcast_ref::<A>().ok_or_else(|| {
        ArrowError::SchemaError(format!("list column {name} has another item type"))
    })?;
    Ok((list.value_offsets(), values))
}
