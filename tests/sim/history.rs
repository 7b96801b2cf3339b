//! The client history of a simulation run, and a linearizability checker for it.
//!
//! Clients write unique values to a few keys and read them back with linearizable reads. Each
//! key is an independent register, and linearizability is compositional (Herlihy & Wing,
//! 1990, "locality"), so each key is checked on its own.
//!
//! Because every written value is unique, each read names the one write it observed. For a
//! register with that "read mapping" known, Gibbons & Korach ("Testing shared memories", SIAM
//! J. Comput. 26(4), 1997) give an exact and fast test, used here:
//!
//! * a write and the reads that returned its value form a *cluster*, which a linearization
//!   must place as one contiguous run, write first;
//! * a cluster's *zone* runs from the earliest completion of its operations (`f`) to the
//!   latest invocation (`s`). If `f < s` it is a *forward* zone, and the cluster's run must
//!   cover all of `[f, s]`; otherwise a *backward* zone `[s, f]`, inside which the cluster can
//!   sit at any instant;
//! * the history is linearizable iff no read precedes its own write, no two forward zones
//!   intersect, and no backward zone lies inside another cluster's forward zone.
//!
//! The initial (absent) value is a cluster of its own whose write happened before time 0.
//! [`check_brute_force`] is a plain search over orders (Wing & Gong) used only to test this
//! checker on small random histories.
//!
//! Times are abstract instants. The simulation maps step `n` to `2n` for invocations and
//! `2n + 1` for completions, so an operation completed in the step another was invoked counts
//! as concurrent with it (the sound choice: it never invents an order that did not exist).

use std::collections::{BTreeMap, HashMap};

/// The time of the virtual write that put the initial (absent) value: before every operation,
/// whose times must be at least [`FIRST_TIME`].
const INITIAL_WRITE_INVOKED: u64 = 0;
const INITIAL_WRITE_COMPLETED: u64 = 1;
/// The earliest time an operation may be invoked.
pub const FIRST_TIME: u64 = 2;

/// How a write ended, as the client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Acknowledged: it took effect, between its invocation and completion.
    Ok,
    /// Refused before entering the log: it never takes effect.
    Failed,
    /// Unknown (timed out, member crashed, no answer by the end): it may take effect at any
    /// time after its invocation, or never.
    Ambiguous,
}

/// One write of a unique value to a key.
#[derive(Clone, Debug)]
pub struct Write {
    /// The key (an index into the run's key set).
    pub key: usize,
    /// The unique value.
    pub value: u64,
    /// When the client sent it.
    pub invoked: u64,
    /// When the client got its answer (`None`: never, or ambiguous).
    pub completed: Option<u64>,
    /// How it ended.
    pub outcome: WriteOutcome,
}

/// One linearizable read that returned.
#[derive(Clone, Debug)]
pub struct Read {
    /// The key.
    pub key: usize,
    /// The value read (`None`: the key was absent).
    pub value: Option<u64>,
    /// When the client sent it.
    pub invoked: u64,
    /// When the value was returned.
    pub completed: u64,
}

/// Every client operation of a run.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The writes.
    pub writes: Vec<Write>,
    /// The reads that returned a value (failed reads constrain nothing).
    pub reads: Vec<Read>,
}

/// An operation's interval in a cluster; `u64::MAX` stands for "never completed".
#[derive(Clone, Copy, Debug)]
struct Interval {
    invoked: u64,
    completed: u64,
}

/// Checks the whole history, key by key; the error names the key and the operations at fault.
pub fn check(history: &History) -> Result<(), String> {
    let mut keys: Vec<usize> = history
        .writes
        .iter()
        .map(|w| w.key)
        .chain(history.reads.iter().map(|r| r.key))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        let writes: Vec<&Write> = history.writes.iter().filter(|w| w.key == key).collect();
        let reads: Vec<&Read> = history.reads.iter().filter(|r| r.key == key).collect();
        check_register(&writes, &reads).map_err(|e| format!("key {key}: {e}"))?;
    }
    Ok(())
}

/// Gibbons & Korach's test for one register (see the module docs).
fn check_register(writes: &[&Write], reads: &[&Read]) -> Result<(), String> {
    let mut by_value: HashMap<u64, &Write> = HashMap::new();
    for write in writes {
        assert!(
            write.invoked >= FIRST_TIME,
            "{write:?} invoked before time {FIRST_TIME}"
        );
        if by_value.insert(write.value, write).is_some() {
            return Err(format!("value {} written twice", write.value));
        }
    }
    // Cluster per written value (None: the initial value), as intervals; write first.
    let mut clusters: BTreeMap<Option<u64>, Vec<Interval>> = BTreeMap::new();
    clusters.insert(
        None,
        vec![Interval {
            invoked: INITIAL_WRITE_INVOKED,
            completed: INITIAL_WRITE_COMPLETED,
        }],
    );
    for read in reads {
        let interval = Interval {
            invoked: read.invoked,
            completed: read.completed,
        };
        assert!(
            FIRST_TIME <= read.invoked && read.invoked <= read.completed,
            "{read:?} has a bad interval"
        );
        let Some(value) = read.value else {
            clusters
                .get_mut(&None)
                .expect("initial cluster")
                .push(interval);
            continue;
        };
        let Some(write) = by_value.get(&value) else {
            return Err(format!("{read:?} returned a value no client wrote"));
        };
        if write.outcome == WriteOutcome::Failed {
            return Err(format!(
                "{read:?} returned the value of {write:?}, which was refused"
            ));
        }
        if read.completed < write.invoked {
            return Err(format!(
                "{read:?} returned the value of {write:?}, invoked only after the read completed"
            ));
        }
        clusters
            .entry(Some(value))
            .or_insert_with(|| {
                vec![Interval {
                    invoked: write.invoked,
                    completed: write_completion(write),
                }]
            })
            .push(interval);
    }
    // Acknowledged writes nobody read still took effect; ambiguous ones nobody read may be
    // left out (removing an unread write keeps a linearization valid, and a pending write may
    // be omitted), refused ones never happened.
    for write in writes {
        if write.outcome == WriteOutcome::Ok {
            clusters.entry(Some(write.value)).or_insert_with(|| {
                vec![Interval {
                    invoked: write.invoked,
                    completed: write_completion(write),
                }]
            });
        }
    }

    struct Zone {
        value: Option<u64>,
        low: u64,
        high: u64,
    }
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    for (value, ops) in &clusters {
        let first_completion = ops.iter().map(|o| o.completed).min().expect("non-empty");
        let last_invocation = ops.iter().map(|o| o.invoked).max().expect("non-empty");
        if first_completion < last_invocation {
            forward.push(Zone {
                value: *value,
                low: first_completion,
                high: last_invocation,
            });
        } else {
            backward.push(Zone {
                value: *value,
                low: last_invocation,
                high: first_completion,
            });
        }
    }
    forward.sort_by_key(|z| z.low);
    for pair in forward.windows(2) {
        if pair[1].low <= pair[0].high {
            return Err(format!(
                "the writes of values {:?} and {:?} with their reads overlap: forward zones \
                 [{}, {}] and [{}, {}] (times: 2 * step for invocations, 2 * step + 1 for \
                 completions)",
                pair[0].value, pair[1].value, pair[0].low, pair[0].high, pair[1].low, pair[1].high
            ));
        }
    }
    for zone in &backward {
        // Forward zones are disjoint and sorted: only the last one starting at or before the
        // backward zone can contain it.
        let at = forward.partition_point(|f| f.low <= zone.low);
        if at == 0 {
            continue;
        }
        let candidate = &forward[at - 1];
        if candidate.value != zone.value && zone.high <= candidate.high {
            return Err(format!(
                "the write of value {:?} and its reads (zone [{}, {}]) fall inside the forward \
                 zone [{}, {}] of value {:?}: a read saw a value overwritten before it began, \
                 or an acknowledged write vanished",
                zone.value, zone.low, zone.high, candidate.low, candidate.high, candidate.value
            ));
        }
    }
    Ok(())
}

fn write_completion(write: &Write) -> u64 {
    match (write.outcome, write.completed) {
        (WriteOutcome::Ok, Some(completed)) => completed,
        // An ambiguous write may take effect at any time after its invocation.
        _ => u64::MAX,
    }
}

/// A plain search for a linearization of one key's history (Wing & Gong, with memoization of
/// visited states). Exponential: for testing [`check`] on small histories only.
pub fn check_brute_force(history: &History) -> Result<(), String> {
    let mut keys: Vec<usize> = history
        .writes
        .iter()
        .map(|w| w.key)
        .chain(history.reads.iter().map(|r| r.key))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    for key in keys {
        #[derive(Clone, Copy)]
        enum Op {
            Write { value: u64, optional: bool },
            Read { value: Option<u64> },
        }
        let mut ops: Vec<(Interval, Op)> = Vec::new();
        for write in history.writes.iter().filter(|w| w.key == key) {
            match write.outcome {
                WriteOutcome::Failed => {}
                WriteOutcome::Ok | WriteOutcome::Ambiguous => ops.push((
                    Interval {
                        invoked: write.invoked,
                        completed: write_completion(write),
                    },
                    Op::Write {
                        value: write.value,
                        optional: write.outcome == WriteOutcome::Ambiguous,
                    },
                )),
            }
        }
        for read in history.reads.iter().filter(|r| r.key == key) {
            ops.push((
                Interval {
                    invoked: read.invoked,
                    completed: read.completed,
                },
                Op::Read { value: read.value },
            ));
        }
        assert!(ops.len() <= 20, "brute force is for small histories");
        let required: u32 = ops
            .iter()
            .enumerate()
            .filter(|(_, (_, op))| !matches!(op, Op::Write { optional: true, .. }))
            .map(|(i, _)| 1 << i)
            .sum();
        let mut seen = std::collections::HashSet::new();
        // Depth-first over (done mask, current value); an op may go next when no other op
        // still to do completed before it was invoked. Optional (ambiguous) writes may be
        // skipped: marking one done without effect is the same as omitting it.
        let mut stack = vec![(0u32, None::<u64>)];
        let mut found = false;
        while let Some((done, value)) = stack.pop() {
            if done & required == required {
                found = true;
                break;
            }
            if !seen.insert((done, value)) {
                continue;
            }
            let deadline = ops
                .iter()
                .enumerate()
                .filter(|(i, _)| done & (1 << i) == 0)
                .map(|(_, (interval, _))| interval.completed)
                .min()
                .unwrap_or(u64::MAX);
            for (i, (interval, op)) in ops.iter().enumerate() {
                // An op invoked after another op still to do completed must follow it.
                if done & (1 << i) != 0 || interval.invoked > deadline {
                    continue;
                }
                let next = done | (1 << i);
                match op {
                    Op::Write {
                        value: written,
                        optional,
                    } => {
                        stack.push((next, Some(*written)));
                        if *optional {
                            stack.push((next, value));
                        }
                    }
                    Op::Read { value: read } => {
                        if *read == value {
                            stack.push((next, value));
                        }
                    }
                }
            }
        }
        if !found {
            return Err(format!("key {key}: no linearization exists"));
        }
    }
    Ok(())
}
