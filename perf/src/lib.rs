//! Load generation and benchmark reports (filled by the perf issue).
