// Command net-veth is the subhost stage that gives a subhost its network:
// a network namespace named after the subhost (/run/netns/NAME, so that
// `ip netns exec NAME` works), loopback up inside, and for every element
// of the config's BRIDGES=( bridge:MAC ... ) a veth pair whose guest end
// is eth<i> with that MAC and whose host end, <PREFIX><i>, is a port of
// that bridge. PREFIX is the config variable HOSTIF_PREFIX, or the
// subhost name.
//
// "The host" is the network namespace the plugin runs in: run subhost
// under `nsenter --net=...` and the bridges are that namespace's. All
// namespace work goes through netlink sockets opened inside the wanted
// namespace on a throwaway OS thread; no thread that Go may reuse ever
// changes namespace.
//
// Down takes down only veths whose peer is in the subhost's namespace,
// found by the names the state records and the config gives. It unpins
// the namespace and lets go of it: the kernel then deletes the veth pairs
// with the namespace, in the background and without the RCU grace
// periods that deleting a pair outright waits for with RTNL held. A Down
// alone waits briefly for the host ends to vanish; one still there then
// (something else, a shell nsenter'ed into the namespace, holds it), or
// any at all when other Downs are under way (the kernel's one worker for
// it falls behind them), it deletes itself.
package main
