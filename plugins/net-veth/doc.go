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
package main
