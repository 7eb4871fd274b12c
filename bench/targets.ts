// Targets for benchmarked processes. A target crosses to the child by reference (the child imports
// this module and takes the export), so this module imports nothing: its import cost is part of
// every measured start and should be as small as a user's own target module can be.

/** The empty target: a start+join of it measures the library's own per-process cost. */
export function noop(): void {}
