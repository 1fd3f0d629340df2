//! The command encoding: compact, little-endian, validated on decode.
//!
//! Layout: `tag: u8 | client_id: u64 | sequence: u64 | [key_len: u32 | key] | [value_len: u32 | value]`.
//! Put carries key and value, Delete and Get carry a key, Noop carries neither.

use crate::limits;

/// A client's request, with the session that makes retries exactly-once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// The client's session id. 0 means "no session": never deduplicated.
    pub client_id: u64,
    /// The client's request number; a client uses each number for one request, increasing.
    pub sequence: u64,
    /// What to do.
    pub op: Op,
}

/// The operation a command performs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Read `key` through the log (reads usually go through ReadIndex instead).
    Get {
        /// The key.
        key: Vec<u8>,
    },
    /// Does nothing but record the session.
    Noop,
}

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;
const TAG_GET: u8 = 3;
const TAG_NOOP: u8 = 4;
const HEADER_BYTES: usize = 1 + 8 + 8;

/// Why bytes are not a valid command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before a field was complete.
    #[error(
        "command truncated: needed {needed_bytes} bytes at offset {offset}, have {have_bytes}"
    )]
    Truncated {
        /// Where the field starts.
        offset: usize,
        /// How many bytes the field needs.
        needed_bytes: usize,
        /// How many bytes remain.
        have_bytes: usize,
    },
    /// The first byte names no known command.
    #[error("unknown command tag {0}")]
    UnknownTag(u8),
    /// A key or value is longer than `limits::ENTRY_BYTES_MAX`.
    #[error("field of {0} bytes exceeds limits::ENTRY_BYTES_MAX")]
    TooLong(usize),
    /// Bytes remain after the command.
    #[error("{0} trailing bytes after the command")]
    Trailing(usize),
}

impl Command {
    /// Encodes the command.
    pub fn encode(&self) -> Vec<u8> {
        self.as_ref().encode()
    }

    /// The length of [`Command::encode`]'s output.
    pub fn encoded_len_bytes(&self) -> usize {
        self.as_ref().encoded_len_bytes()
    }

    /// The same command, borrowing its fields.
    pub fn as_ref(&self) -> CommandRef<'_> {
        CommandRef {
            client_id: self.client_id,
            sequence: self.sequence,
            op: match &self.op {
                Op::Put { key, value } => OpRef::Put { key, value },
                Op::Delete { key } => OpRef::Delete { key },
                Op::Get { key } => OpRef::Get { key },
                Op::Noop => OpRef::Noop,
            },
        }
    }

    /// Decodes and validates a command.
    pub fn decode(bytes: &[u8]) -> Result<Command, DecodeError> {
        let command = CommandRef::decode(bytes)?;
        Ok(Command {
            client_id: command.client_id,
            sequence: command.sequence,
            op: match command.op {
                OpRef::Put { key, value } => Op::Put {
                    key: key.to_vec(),
                    value: value.to_vec(),
                },
                OpRef::Delete { key } => Op::Delete { key: key.to_vec() },
                OpRef::Get { key } => Op::Get { key: key.to_vec() },
                OpRef::Noop => Op::Noop,
            },
        })
    }
}

/// A decoded command borrowing its key and value from the entry: what applying needs, without
/// copying a value only to copy it again into the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandRef<'a> {
    /// See [`Command::client_id`].
    pub client_id: u64,
    /// See [`Command::sequence`].
    pub sequence: u64,
    /// What to do.
    pub op: OpRef<'a>,
}

/// [`Op`] with borrowed fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpRef<'a> {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: &'a [u8],
        /// The new value.
        value: &'a [u8],
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: &'a [u8],
    },
    /// Read `key`.
    Get {
        /// The key.
        key: &'a [u8],
    },
    /// Does nothing but record the session.
    Noop,
}

impl<'a> CommandRef<'a> {
    /// Encodes the command (the leader encodes client requests from the request's own bytes,
    /// with no owned copy in between).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len_bytes());
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoding to `out` (the leader writes a command straight into its log record).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let tag = match self.op {
            OpRef::Put { .. } => TAG_PUT,
            OpRef::Delete { .. } => TAG_DELETE,
            OpRef::Get { .. } => TAG_GET,
            OpRef::Noop => TAG_NOOP,
        };
        out.push(tag);
        out.extend_from_slice(&self.client_id.to_le_bytes());
        out.extend_from_slice(&self.sequence.to_le_bytes());
        match self.op {
            OpRef::Put { key, value } => {
                put_field(out, key);
                put_field(out, value);
            }
            OpRef::Delete { key } | OpRef::Get { key } => put_field(out, key),
            OpRef::Noop => {}
        }
    }

    /// The length of [`CommandRef::encode`]'s output.
    pub fn encoded_len_bytes(&self) -> usize {
        HEADER_BYTES
            + match self.op {
                OpRef::Put { key, value } => 8 + key.len() + value.len(),
                OpRef::Delete { key } | OpRef::Get { key } => 4 + key.len(),
                OpRef::Noop => 0,
            }
    }

    /// Decodes and validates a command (the same rules as [`Command::decode`]).
    pub fn decode(bytes: &'a [u8]) -> Result<CommandRef<'a>, DecodeError> {
        let mut reader = Reader { bytes, offset: 0 };
        let tag = reader.take(1)?[0];
        let client_id = reader.u64()?;
        let sequence = reader.u64()?;
        let op = match tag {
            TAG_PUT => {
                let key = reader.field_ref()?;
                let value = reader.field_ref()?;
                OpRef::Put { key, value }
            }
            TAG_DELETE => OpRef::Delete {
                key: reader.field_ref()?,
            },
            TAG_GET => OpRef::Get {
                key: reader.field_ref()?,
            },
            TAG_NOOP => OpRef::Noop,
            other => return Err(DecodeError::UnknownTag(other)),
        };
        let trailing = bytes.len() - reader.offset;
        if trailing != 0 {
            return Err(DecodeError::Trailing(trailing));
        }
        Ok(CommandRef {
            client_id,
            sequence,
            op,
        })
    }
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    assert!(
        field.len() <= limits::ENTRY_BYTES_MAX,
        "field longer than ENTRY_BYTES_MAX"
    );
    out.extend_from_slice(&(field.len() as u32).to_le_bytes());
    out.extend_from_slice(field);
}

/// A bounds-checked cursor; shared with the snapshot decoder.
pub(crate) struct Reader<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let have_bytes = self.bytes.len() - self.offset;
        if have_bytes < n {
            return Err(DecodeError::Truncated {
                offset: self.offset,
                needed_bytes: n,
                have_bytes,
            });
        }
        let out = &self.bytes[self.offset..self.offset + n];
        self.offset += n;
        Ok(out)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub(crate) fn field(&mut self) -> Result<Vec<u8>, DecodeError> {
        Ok(self.field_ref()?.to_vec())
    }

    pub(crate) fn field_ref(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        if len > limits::ENTRY_BYTES_MAX {
            return Err(DecodeError::TooLong(len));
        }
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_ops() -> Vec<Command> {
        let key = b"k1".to_vec();
        vec![
            Command {
                client_id: 7,
                sequence: 1,
                op: Op::Put {
                    key: key.clone(),
                    value: b"v".to_vec(),
                },
            },
            Command {
                client_id: 7,
                sequence: 2,
                op: Op::Delete { key: key.clone() },
            },
            Command {
                client_id: 8,
                sequence: 3,
                op: Op::Get { key },
            },
            Command {
                client_id: u64::MAX,
                sequence: u64::MAX,
                op: Op::Noop,
            },
            Command {
                client_id: 1,
                sequence: 1,
                op: Op::Put {
                    key: vec![],
                    value: vec![],
                },
            },
        ]
    }

    #[test]
    fn round_trips_every_op() {
        for command in all_ops() {
            let bytes = command.encode();
            assert_eq!(bytes.len(), command.encoded_len_bytes());
            assert_eq!(Command::decode(&bytes), Ok(command));
        }
    }

    #[test]
    fn rejects_every_truncation_and_trailing_bytes() {
        for command in all_ops() {
            let bytes = command.encode();
            for len in 0..bytes.len() {
                assert!(
                    matches!(
                        Command::decode(&bytes[..len]),
                        Err(DecodeError::Truncated { .. })
                    ),
                    "len {len}"
                );
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(Command::decode(&longer), Err(DecodeError::Trailing(1)));
        }
    }

    #[test]
    fn rejects_unknown_tag_and_huge_lengths() {
        let mut bytes = all_ops()[0].encode();
        bytes[0] = 99;
        assert_eq!(Command::decode(&bytes), Err(DecodeError::UnknownTag(99)));
        let mut bytes = all_ops()[1].encode();
        bytes[17..21].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            Command::decode(&bytes),
            Err(DecodeError::TooLong(u32::MAX as usize))
        );
    }
}
