//! The active set's chunk values (see [`crate::keys::active_chunk`]): order ids, 16 bytes
//! each, ascending.

use flashrent_events::OrderId;
use uuid::Uuid;

const ID: usize = 16;

/// Where `id` is in `ids` (`Ok`), or where it would go (`Err`), counted in ids.
pub fn position(ids: &[u8], id: &[u8; ID]) -> Result<usize, usize> {
    let (mut lo, mut hi) = (0, ids.len() / ID);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match ids[mid * ID..(mid + 1) * ID].cmp(id.as_slice()) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(mid),
        }
    }
    Err(lo)
}

/// Puts `id` in its place in `ids`; `false` if it was there already.
pub fn insert(ids: &mut Vec<u8>, id: &[u8; ID]) -> bool {
    match position(ids, id) {
        Ok(_) => false,
        Err(at) => {
            ids.splice(at * ID..at * ID, id.iter().copied());
            true
        }
    }
}

/// Takes `id` out of `ids`; `false` if it was not there.
pub fn remove(ids: &mut Vec<u8>, id: &[u8; ID]) -> bool {
    match position(ids, id) {
        Ok(at) => {
            ids.drain(at * ID..(at + 1) * ID);
            true
        }
        Err(_) => false,
    }
}

/// The ids of a chunk, ascending (a torn trailing piece, which apply never writes, is left out).
pub fn ids(chunk: &[u8]) -> impl Iterator<Item = OrderId> + '_ {
    chunk.chunks_exact(ID).map(|b| {
        let bytes: [u8; ID] = b.try_into().expect("chunks_exact gives 16 bytes");
        OrderId::from_uuid(Uuid::from_bytes(bytes))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_follow_byte_order() {
        let a = [1u8; ID];
        let b = [2u8; ID];
        let c = [3u8; ID];
        let chunk: Vec<u8> = [a, c].concat();
        assert_eq!(position(&chunk, &a), Ok(0));
        assert_eq!(position(&chunk, &b), Err(1));
        assert_eq!(position(&chunk, &c), Ok(1));
        assert_eq!(position(&chunk, &[4u8; ID]), Err(2));
        assert_eq!(position(&[], &a), Err(0));
        assert_eq!(ids(&chunk).count(), 2);
    }
}
