//! The engine-agnostic bid stage, called by both engines for each request: the
//! partner [`gate`] (who sent it, enabled, within its rate by [`rate_limit`]), then
//! the [`pipeline`] (parse → decide → reserve → encode).

pub mod gate;
pub mod pipeline;
pub mod rate_limit;
