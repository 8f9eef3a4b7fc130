//! How a batch crosses into a component: its Arrow IPC stream is lowered as
//! the `list<u8>` of `session.process` straight from the pieces the encoder
//! makes (metadata, then the arrays' own buffers), so the host never joins
//! them into one buffer first. The guest sees exactly the bytes
//! `strata_sdk::encode_batch` would have produced.

use std::mem::MaybeUninit;

use arrow_buffer::Buffer;
use wasmtime::ValRaw;
use wasmtime::component::__internal::{
    CanonicalAbiInfo, InstanceType, InterfaceType, LowerContext,
};
use wasmtime::component::{ComponentType, Lower};

/// An Arrow IPC stream in pieces; lowers as one `list<u8>`.
pub(crate) struct IpcPieces(pub(crate) Vec<Buffer>);

impl IpcPieces {
    /// Allocates the list in the guest and copies every piece into it.
    fn store<U>(&self, cx: &mut LowerContext<'_, U>) -> wasmtime::Result<(usize, usize)> {
        let len: usize = self.0.iter().map(Buffer::len).sum();
        let ptr = cx.realloc(0, 0, 1, len)?;
        let dst = cx
            .as_slice_mut()
            .get_mut(ptr..)
            .and_then(|m| m.get_mut(..len))
            .ok_or_else(|| wasmtime::format_err!("list pointer out of bounds of memory"))?;
        let mut at = 0;
        for piece in &self.0 {
            dst[at..at + piece.len()].copy_from_slice(piece);
            at += piece.len();
        }
        Ok((ptr, len))
    }
}

// SAFETY: the representation is the canonical ABI's for `list<u8>` (a
// pointer and a length), exactly as wasmtime's own `[u8]` implementation.
unsafe impl ComponentType for IpcPieces {
    type Lower = [ValRaw; 2];

    const ABI: CanonicalAbiInfo = CanonicalAbiInfo::POINTER_PAIR;

    fn typecheck(ty: &InterfaceType, types: &InstanceType<'_>) -> wasmtime::Result<()> {
        <[u8] as ComponentType>::typecheck(ty, types)
    }
}

// SAFETY: writes a pointer and length of a list it allocated with the
// guest's `realloc` and filled within bounds, as `[u8]` does.
unsafe impl Lower for IpcPieces {
    fn linear_lower_to_flat<U>(
        &self,
        cx: &mut LowerContext<'_, U>,
        _ty: InterfaceType,
        dst: &mut MaybeUninit<[ValRaw; 2]>,
    ) -> wasmtime::Result<()> {
        let (ptr, len) = self.store(cx)?;
        // Pointers are written as 64-bit values, as wasmtime does.
        dst.write([ValRaw::i64(ptr as i64), ValRaw::i64(len as i64)]);
        Ok(())
    }

    fn linear_lower_to_memory<U>(
        &self,
        cx: &mut LowerContext<'_, U>,
        _ty: InterfaceType,
        offset: usize,
    ) -> wasmtime::Result<()> {
        let (ptr, len) = self.store(cx)?;
        let to_u32 = |n: usize| {
            u32::try_from(n).map_err(|_| wasmtime::format_err!("list larger than 4 GiB"))
        };
        *cx.get::<4>(offset) = to_u32(ptr)?.to_le_bytes();
        *cx.get::<4>(offset + 4) = to_u32(len)?.to_le_bytes();
        Ok(())
    }
}
