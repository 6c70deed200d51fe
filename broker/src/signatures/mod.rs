//! Verification of documents signed with the card's signature certificate (banks' API).
