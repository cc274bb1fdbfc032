//! Which messages one subscriber received: a bitset over the sequence
//! numbers of a run, so that a lost message (never seen) and a duplicate
//! (seen twice) are told apart exactly, at one bit per expected delivery.

/// The sequence numbers `0..expected` one subscriber has seen.
#[derive(Debug, Clone)]
pub struct Seen {
    bits: Vec<u64>,
    expected: u64,
    received: u64,
    duplicated: u64,
    /// Sequence numbers at or past `expected` (not from this run's plan).
    out_of_range: u64,
}

impl Seen {
    pub fn new(expected: u64) -> Seen {
        Seen {
            bits: vec![0; usize::try_from(expected.div_ceil(64)).unwrap_or(usize::MAX)],
            expected,
            received: 0,
            duplicated: 0,
            out_of_range: 0,
        }
    }

    /// Counts one delivery of `seq`.
    pub fn record(&mut self, seq: u64) {
        let Some(word) = usize::try_from(seq / 64)
            .ok()
            .filter(|_| seq < self.expected)
            .and_then(|i| self.bits.get_mut(i))
        else {
            self.out_of_range += 1;
            return;
        };
        let bit = 1u64 << (seq % 64);
        if *word & bit == 0 {
            *word |= bit;
            self.received += 1;
        } else {
            self.duplicated += 1;
        }
    }

    /// Every expected sequence number has been seen.
    pub fn complete(&self) -> bool {
        self.received == self.expected
    }

    /// Expected sequence numbers never seen.
    pub fn lost(&self) -> u64 {
        self.expected - self.received
    }

    /// Deliveries of a sequence number already seen.
    pub fn duplicated(&self) -> u64 {
        self.duplicated
    }

    pub fn out_of_range(&self) -> u64 {
        self.out_of_range
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_once_is_complete() {
        let mut s = Seen::new(130);
        for seq in (0..130).rev() {
            s.record(seq);
        }
        assert!(s.complete());
        assert_eq!((s.lost(), s.duplicated()), (0, 0));
    }

    #[test]
    fn counts_lost_and_duplicated_separately() {
        let mut s = Seen::new(100);
        for seq in 0..100 {
            if seq % 10 != 3 {
                s.record(seq);
            }
        }
        s.record(0);
        s.record(64);
        s.record(64);
        assert!(!s.complete());
        assert_eq!(s.lost(), 10);
        assert_eq!(s.duplicated(), 3);
        // A lost one arriving late is no longer lost, and not a duplicate.
        s.record(3);
        assert_eq!((s.lost(), s.duplicated()), (9, 3));
    }

    #[test]
    fn out_of_range_numbers_are_counted_apart() {
        let mut s = Seen::new(64);
        s.record(64);
        s.record(u64::MAX);
        assert_eq!(s.out_of_range(), 2);
        assert_eq!((s.lost(), s.duplicated()), (64, 0));
        let mut empty = Seen::new(0);
        empty.record(0);
        assert!(empty.complete());
        assert_eq!(empty.out_of_range(), 1);
    }
}
