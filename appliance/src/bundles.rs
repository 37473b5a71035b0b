//! The appliance side of signed policy: the installed trust root, the active bundle and the last
//! good one on disk, and their atomic, journaled activation. Verification itself is `otgate-sync`.
