// Command userns is the subhost stage that makes an unprivileged
// subhost's user namespace: first in both built-in pipelines, and a
// no-op when PRIVATE_USERS is no (the default).
//
// Up takes the subhost's host id range from the host-wide registry
// (internal/idrange: "pick", or the explicit BASE[:SIZE]), then makes a
// user namespace mapping the guest's 0..SIZE-1 to it (uids and gids)
// together with a network namespace that it owns (internal/userns), and
// pins them: the user namespace on STATE/.userns/NAME.HASH (STATE the
// runner's state root, /run/subhost by default; HASH from the home, as
// the init stage's launch records; a pin an older build left in
// /run/subhost/.userns is still found and adopted), the network
// namespace on /run/netns/NAME, where net-veth finds and adopts it. The
// boot record gets userns (the pin's path), userns_base, userns_size and
// netns. Pins and range outlive the runner: a hibernating subhost keeps
// them, and Up adopts them again (checking that the network namespace
// is still the user namespace's). Down unpins both and releases the
// range, from any state: the paths follow from name and home.
//
// An explicit range that overlaps another subhost's or a subuid/subgid
// range is refused by Validate (invalid config: exit 2, nothing made).
package main
