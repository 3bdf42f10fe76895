//! The table pipeline (target-design §8): source → sorter → sink per table. Work in progress
//! for issue #4: the sorter and the table task are done; the supervisor that starts and
//! stops tasks on the processor's commands comes next.

pub mod metrics;
pub mod sorter;
pub mod table;
