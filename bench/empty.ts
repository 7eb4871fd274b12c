// The script a raw `child_process.fork` anchor runs: nothing, so the anchor is the bare cost of
// starting and ending a node process with an IPC channel.
export {};
