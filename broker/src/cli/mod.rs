//! Command-line tools beside the server: the card helper (plays browser and/or helper over
//! HTTP), card issuance for the demo PKI, relying-party secrets.

pub mod helper;
