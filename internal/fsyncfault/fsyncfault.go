// Package fsyncfault injects one fault for durability tests: from Install
// on, every fsync-family system call of the process fails with EIO while
// writes still succeed. A store that acknowledges a write without making it
// durable then still acknowledges it, so the test sees the missing fsync
// that a kill -9 test cannot (a killed process leaves its writes in the
// page cache, where they survive).
//
// Install cannot be undone: call it only in a child process that a test
// re-executes for the purpose.
package fsyncfault
