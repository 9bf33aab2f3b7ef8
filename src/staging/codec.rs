//! Encoding of staged rows and fact rows (MessagePack via rmp-serde).

use super::{Result, StagingError};
use serde::{Deserialize, Serialize};

/// A validated IDB value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// Integer column.
    Int(i64),
    /// Text column.
    Text(String),
}

/// One staged IDB row: its version and its contract columns (None = NULL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedRow {
    /// Greatest of `GSYS_SEQ` and `GSYS_USEQ`: a newer version replaces an older one.
    pub version: i64,
    /// Values in contract column order.
    pub values: Vec<Option<Value>>,
}

impl StagedRow {
    /// Integer at `idx`, if present.
    pub fn int(&self, idx: usize) -> Option<i64> {
        match self.values.get(idx) {
            Some(Some(Value::Int(i))) => Some(*i),
            _ => None,
        }
    }

    /// Text at `idx`, if present.
    pub fn text(&self, idx: usize) -> Option<&str> {
        match self.values.get(idx) {
            Some(Some(Value::Text(s))) => Some(s),
            _ => None,
        }
    }

    /// Encoding: the version as 8 little-endian bytes, then the values as MessagePack. The fixed prefix lets
    /// extraction compare versions without decoding rows.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let mut out = self.version.to_le_bytes().to_vec();
        out.extend(
            rmp_serde::to_vec(&self.values).map_err(|source| StagingError::Encode { table: "group_rows", source })?,
        );
        Ok(out)
    }

    pub(crate) fn version_of(b: &[u8]) -> Result<i64> {
        let head: [u8; 8] = b
            .get(..8)
            .and_then(|h| h.try_into().ok())
            .ok_or(StagingError::Truncated { table: "group_rows", len: b.len() })?;
        Ok(i64::from_le_bytes(head))
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self> {
        let version = Self::version_of(b)?;
        let values =
            rmp_serde::from_slice(&b[8..]).map_err(|source| StagingError::Decode { table: "group_rows", source })?;
        Ok(StagedRow { version, values })
    }
}

/// One cell of a fact row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    /// NULL.
    Null,
    /// 64-bit integer.
    Int(i64),
    /// Text.
    Text(String),
    /// 64-bit float (ratios and averages of the aggregates).
    Float(f64),
}

/// A fact or dimension row in the column order of its mart table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactRow(pub Vec<Cell>);

impl FactRow {
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        rmp_serde::to_vec(self).map_err(|source| StagingError::Encode { table: "facts", source })
    }

    pub(crate) fn decode(b: &[u8]) -> Result<Self> {
        rmp_serde::from_slice(b).map_err(|source| StagingError::Decode { table: "facts", source })
    }
}
