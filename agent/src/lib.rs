//! The agent sidecar: control socket, strategy-table writer, audit log.
