//! The client-visible history: every operation's invocation and completion, in a logical
//! real-time order (one counter, bumped at every invocation and completion).

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Set the key (`None`: delete it).
    Write(Option<Vec<u8>>),
    /// Read the key; the value is known once the read completes.
    Read(Option<Option<Vec<u8>>>),
}

/// One client operation on one key.
#[derive(Clone, Debug)]
pub struct Operation {
    /// The client that issued it.
    pub client: u64,
    /// The key.
    pub key: Vec<u8>,
    /// What it did.
    pub kind: OpKind,
    /// When it was invoked.
    pub invoke: u64,
    /// When it completed; `None` when its fate is unknown (a write that may or may not have
    /// taken effect) or, for reads, when it never returned (ignored).
    pub complete: Option<u64>,
}

/// The whole history of a run.
#[derive(Default, Clone, Debug)]
pub struct History {
    /// Operations, in invocation order.
    pub ops: Vec<Operation>,
    clock: u64,
}

impl History {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Records an invocation; returns the operation's id.
    pub fn invoke(&mut self, client: u64, key: Vec<u8>, kind: OpKind) -> usize {
        let invoke = self.tick();
        self.ops.push(Operation {
            client,
            key,
            kind,
            invoke,
            complete: None,
        });
        self.ops.len() - 1
    }

    /// Records that a write completed.
    pub fn complete_write(&mut self, id: usize) {
        let at = self.tick();
        let op = &mut self.ops[id];
        assert!(
            matches!(op.kind, OpKind::Write(_)) && op.complete.is_none(),
            "completing op {id} twice or as a write"
        );
        op.complete = Some(at);
    }

    /// Records that a read completed with `value`.
    pub fn complete_read(&mut self, id: usize, value: Option<Vec<u8>>) {
        let at = self.tick();
        let op = &mut self.ops[id];
        assert!(
            matches!(op.kind, OpKind::Read(None)) && op.complete.is_none(),
            "completing read {id} twice"
        );
        op.kind = OpKind::Read(Some(value));
        op.complete = Some(at);
    }

    /// Completed reads.
    pub fn reads_completed(&self) -> usize {
        self.ops
            .iter()
            .filter(|op| matches!(op.kind, OpKind::Read(Some(_))))
            .count()
    }

    /// Writes acknowledged to their client.
    pub fn writes_acknowledged(&self) -> usize {
        self.ops
            .iter()
            .filter(|op| matches!(op.kind, OpKind::Write(_)) && op.complete.is_some())
            .count()
    }

    /// Writes whose fate is unknown.
    pub fn writes_indeterminate(&self) -> usize {
        self.ops
            .iter()
            .filter(|op| matches!(op.kind, OpKind::Write(_)) && op.complete.is_none())
            .count()
    }
}
