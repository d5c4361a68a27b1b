//! Helpers shared by the cross-backend tests.
