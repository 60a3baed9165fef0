//! Connections (issue 18, item 9).
