//! Virtual My Number card.
