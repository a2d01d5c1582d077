"""Container networking (links, addresses, routes, nftables, IPAM, CNI): a library the
launcher calls from its parent-side setup stage (oci.container.CreateOptions.setup),
recording each thing it makes in the container's ownership journal first.  Empty until
the networking issue lands; its layer (beside ns/ fs/ cgroups/) is fixed already."""
