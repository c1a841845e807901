//! Subscription trie, retained messages and fan-out. (Stub: being written.)
