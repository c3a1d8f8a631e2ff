//! A small linearizability checker for a single register (Wing & Gong's search with
//! memoisation, as in Knossos/Porcupine).
//!
//! Operations carry the times they were invoked and returned. A write whose outcome is
//! unknown (it timed out or failed ambiguously) may take effect at any point after its
//! invocation, or never. Reads that failed are dropped by the caller: they observed nothing.

use std::collections::HashSet;

#[derive(Debug, Clone, PartialEq)]
pub enum OpKind {
    Write(u64),
    /// What the read saw (`None`: the register was never written).
    Read(Option<u64>),
}

#[derive(Debug, Clone)]
pub struct Op {
    pub kind: OpKind,
    pub call: u128,
    /// `None` when the outcome is unknown (writes only).
    pub ret: Option<u128>,
}

/// Is there a total order of the operations, consistent with real time, in which every
/// read returns the latest write?
pub fn check(ops: &[Op]) -> Result<(), String> {
    let n = ops.len();
    let mut done = vec![false; n];
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    if search(ops, &mut done, None, &mut seen) {
        Ok(())
    } else {
        Err(format!(
            "no linearization of {n} operations exists ({} states explored)",
            seen.len()
        ))
    }
}

fn key(done: &[bool]) -> Vec<u64> {
    let mut k = vec![0u64; done.len().div_ceil(64)];
    for (i, d) in done.iter().enumerate() {
        if *d {
            k[i / 64] |= 1 << (i % 64);
        }
    }
    k
}

fn search(
    ops: &[Op],
    done: &mut Vec<bool>,
    value: Option<u64>,
    seen: &mut HashSet<(Vec<u64>, Option<u64>)>,
) -> bool {
    // Finished when every operation with a known outcome is placed.
    if ops
        .iter()
        .zip(done.iter())
        .all(|(o, d)| *d || o.ret.is_none())
    {
        return true;
    }
    if !seen.insert((key(done), value)) {
        return false;
    }
    // An op may go next only if it was invoked before every pending op returned.
    let horizon = ops
        .iter()
        .zip(done.iter())
        .filter(|(_, d)| !**d)
        .filter_map(|(o, _)| o.ret)
        .min()
        .unwrap_or(u128::MAX);
    for i in 0..ops.len() {
        if done[i] || ops[i].call > horizon {
            continue;
        }
        let next = match &ops[i].kind {
            OpKind::Write(v) => Some(*v),
            OpKind::Read(seen_value) => {
                if *seen_value != value {
                    continue;
                }
                value
            }
        };
        done[i] = true;
        if search(ops, done, next, seen) {
            return true;
        }
        done[i] = false;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, call: u128, ret: u128) -> Op {
        Op {
            kind,
            call,
            ret: Some(ret),
        }
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            op(OpKind::Read(None), 0, 1),
            op(OpKind::Write(1), 2, 3),
            op(OpKind::Read(Some(1)), 4, 5),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn stale_read_after_a_completed_write_is_caught() {
        let h = vec![
            op(OpKind::Write(1), 0, 1),
            op(OpKind::Write(2), 2, 3),
            op(OpKind::Read(Some(1)), 4, 5),
        ];
        assert!(check(&h).is_err());
    }

    #[test]
    fn concurrent_operations_may_order_either_way() {
        let h = vec![
            op(OpKind::Write(1), 0, 10),
            op(OpKind::Read(Some(1)), 1, 2),
            op(OpKind::Read(None), 0, 3),
        ];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn unknown_writes_may_apply_late_or_never() {
        let unknown = |v, call| Op {
            kind: OpKind::Write(v),
            call,
            ret: None,
        };
        let h = vec![
            unknown(7, 0),
            op(OpKind::Read(None), 1, 2),
            op(OpKind::Read(Some(7)), 3, 4),
        ];
        assert!(check(&h).is_ok());
        let h = vec![unknown(7, 0), op(OpKind::Read(None), 1, 2)];
        assert!(check(&h).is_ok());
        // But a value nobody wrote can never be read.
        let h = vec![unknown(7, 0), op(OpKind::Read(Some(8)), 1, 2)];
        assert!(check(&h).is_err());
    }
}
