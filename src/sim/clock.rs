//! Simulated time and the event queue. Time is a `u64` of simulated microseconds; nothing here
//! reads a wall clock. Events at the same time run in the order they were scheduled (a sequence
//! number breaks ties), so a run is a pure function of its seed.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Simulated time, in microseconds since the start of the run.
pub type Micros = u64;

struct Scheduled<E> {
    time_us: Micros,
    sequence: u64,
    event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.time_us, self.sequence) == (other.time_us, other.sequence)
    }
}
impl<E> Eq for Scheduled<E> {}
impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Scheduled<E> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest event first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time_us, other.sequence).cmp(&(self.time_us, self.sequence))
    }
}

/// A deterministic priority queue of events ordered by (time, scheduling order).
pub struct EventQueue<E> {
    heap: BinaryHeap<Scheduled<E>>,
    next_sequence: u64,
    now_us: Micros,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            next_sequence: 0,
            now_us: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// The current simulated time: the time of the last event popped.
    pub fn now_us(&self) -> Micros {
        self.now_us
    }

    /// Schedules `event` at `time_us` (never in the past).
    pub fn schedule(&mut self, time_us: Micros, event: E) {
        let time_us = time_us.max(self.now_us);
        self.heap.push(Scheduled {
            time_us,
            sequence: self.next_sequence,
            event,
        });
        self.next_sequence += 1;
    }

    /// Pops the earliest event if it is due before `before_us`, advancing the clock to it.
    pub fn pop_before(&mut self, before_us: Micros) -> Option<E> {
        if self.heap.peek()?.time_us >= before_us {
            return None;
        }
        let scheduled = self.heap.pop().expect("peeked");
        self.now_us = scheduled.time_us;
        Some(scheduled.event)
    }

    /// Advances the clock to `time_us` without an event (the end of a step).
    pub fn advance_to(&mut self, time_us: Micros) {
        self.now_us = self.now_us.max(time_us);
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no event waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_time_then_scheduling_order() {
        let mut queue = EventQueue::default();
        queue.schedule(20, "c");
        queue.schedule(10, "a");
        queue.schedule(10, "b");
        assert_eq!(queue.pop_before(15), Some("a"));
        assert_eq!(queue.pop_before(15), Some("b"));
        assert_eq!(queue.pop_before(15), None);
        assert_eq!(queue.now_us(), 10);
        assert_eq!(queue.pop_before(100), Some("c"));
    }
}
