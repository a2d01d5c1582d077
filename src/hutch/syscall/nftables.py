"""libnftables (nftables' own library, what `nft` is a front end of) through ffi.

One call runs a whole batch atomically: the JSON or text commands of
nft_run_cmd_from_buffer are one netlink transaction, so a ruleset change either
happens whole or not at all.  Loading the library costs about 1 ms; running `nft`
as a program costs a fork and exec and its own start (several ms) per batch.
"""

from __future__ import annotations

from hutch.errors import HutchError
from hutch.syscall import ffi

NFT_CTX_DEFAULT = 0
NFT_CTX_OUTPUT_HANDLE = 1 << 3
NFT_CTX_OUTPUT_JSON = 1 << 4

c_char_p = type("c_char_p", (ffi._SimpleCData,), {"_type_": "z"})   # ctypes' c_char_p


class _Function(ffi.CFuncPtr):
    _flags_ = ffi.FUNCFLAG_CDECL
    _restype_ = ffi.c_int


class _Library:
    def __init__(self, name: str):
        try:
            self._handle = ffi.dlopen(name, 0)
        except OSError as err:
            raise HutchError(f"cannot load {name} (install the nftables package): {err}",
                             where="nftables") from None

    def function(self, name: str, restype, argtypes: tuple) -> _Function:
        function = _Function((name, self))
        function.restype, function.argtypes = restype, argtypes
        return function


class Nft:
    """A libnftables context with its output and errors captured in buffers."""

    _lib = None

    def __init__(self, json: bool = True):
        lib = Nft._library()
        self._run = lib.function("nft_run_cmd_from_buffer", ffi.c_int, (ffi.c_void_p, c_char_p))
        self._output = lib.function("nft_ctx_get_output_buffer", c_char_p, (ffi.c_void_p,))
        self._error = lib.function("nft_ctx_get_error_buffer", c_char_p, (ffi.c_void_p,))
        self._free = lib.function("nft_ctx_free", None, (ffi.c_void_p,))
        new = lib.function("nft_ctx_new", ffi.c_void_p, (ffi.c_uint32,))
        self._ctx = new(NFT_CTX_DEFAULT)
        if not self._ctx:
            raise HutchError("cannot create an nftables context", where="nftables")
        lib.function("nft_ctx_buffer_output", ffi.c_int, (ffi.c_void_p,))(self._ctx)
        lib.function("nft_ctx_buffer_error", ffi.c_int, (ffi.c_void_p,))(self._ctx)
        if json:
            flags = lib.function("nft_ctx_output_set_flags", None, (ffi.c_void_p, ffi.c_uint32))
            flags(self._ctx, NFT_CTX_OUTPUT_JSON | NFT_CTX_OUTPUT_HANDLE)

    @classmethod
    def _library(cls) -> _Library:
        if cls._lib is None:
            cls._lib = _Library("libnftables.so.1")
        return cls._lib

    def run(self, commands: str) -> tuple[int, str, str]:
        """Run a batch; returns (status, output, errors).  0 is success."""
        status = self._run(self._ctx, commands.encode())
        output = (self._output(self._ctx) or b"").decode(errors="replace")
        errors = (self._error(self._ctx) or b"").decode(errors="replace")
        return status, output, errors

    def close(self) -> None:
        if self._ctx:
            self._free(self._ctx)
            self._ctx = None

    def __enter__(self) -> "Nft":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
