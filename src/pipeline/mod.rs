//! The table pipeline (target-design §8): source → sorter → sink per table. Work in progress
//! for issue #4: the sorter is done; the pipeline task that drives upstream, sorter and sink
//! and reports progress comes next.

pub mod sorter;
