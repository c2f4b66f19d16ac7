//! The agent sidecar (filled by the shared-memory/agent issue).
