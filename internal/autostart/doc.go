// Package autostart keeps the list of subhosts enrolled to start at host
// boot (one small file per subhost in ETC/autostart/), and starts and
// stops subhosts in order: ascending order at boot, equal orders in
// parallel, each waiting (bounded) for its bridges; descending order at
// shutdown, every guest given a timeout and the whole stop a total bound.
//
// It decides what happens in which order; how one subhost is started,
// stopped or looked at is its caller's (Ops), so the scheduling is tested
// without a kernel.
package autostart
