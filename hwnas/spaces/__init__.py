"""Search spaces as data: chain spaces (FBNet, ProxylessNAS, HardCoRe-NAS), the dense routing space (DenseNAS),
the catalog of named spaces, space files (YAML), published networks, and `files.resolve_space`, the one
resolver from a name or file to a space of any kind (cell spaces live in hwnas.cells)."""
