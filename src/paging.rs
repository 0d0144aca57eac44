//! Keyset pagination shared by every list (sessions, reports, jobs, analyses, recordings): newest
//! first by a timestamp then an id, with an opaque cursor naming the last row of a page.

use crate::error::Error;
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

/// A page position: `<timestamp µs>_<id as 32 hex>` (lists ordered by a timestamp, then an id).
pub fn cursor_of(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}_{}", at.timestamp_micros(), id.simple())
}

/// What a bad `cursor` parameter answers.
pub const BAD_CURSOR: &str = "cursor is not one this API returned";

/// The position a cursor names, or `None` when it is not one [`cursor_of`] made.
pub fn decode(c: &str) -> Option<(DateTime<Utc>, Uuid)> {
    let (micros, id) = c.split_once('_')?;
    if micros.trim_start_matches('-').len() > 16 || id.len() != 32 {
        return None;
    }
    let at = DateTime::<Utc>::from_timestamp_micros(micros.parse().ok()?)?;
    Some((at, Uuid::try_parse(id).ok()?))
}

/// [`decode`], answering a bad cursor as invalid input.
pub fn decode_cursor(c: &str) -> Result<(DateTime<Utc>, Uuid), Error> {
    decode(c).ok_or_else(|| Error::invalid("cursor", BAD_CURSOR))
}

/// One keyset page of `q`, newest first by (`at`, `id`), after `cursor`: at most `limit` rows and the
/// cursor of the next page (`None` on the last). The sessions, reports and job lists share it.
pub async fn keyset_page<E>(
    db: &DatabaseConnection,
    mut q: sea_orm::Select<E>,
    (at_col, id_col): (E::Column, E::Column),
    cursor: Option<&str>,
    limit: u32,
    key: impl Fn(&E::Model) -> (DateTime<Utc>, Uuid),
) -> Result<(Vec<E::Model>, Option<String>), Error>
where
    E: EntityTrait,
{
    if let Some(c) = cursor {
        let (at, id) = decode_cursor(c)?;
        q = q.filter(
            Condition::any()
                .add(at_col.lt(at))
                .add(Condition::all().add(at_col.eq(at)).add(id_col.lt(id))),
        );
    }
    let mut rows = q
        .order_by_desc(at_col)
        .order_by_desc(id_col)
        .limit(u64::from(limit) + 1)
        .all(db)
        .await?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| {
            let (at, id) = key(r);
            cursor_of(at, id)
        })
    } else {
        None
    };
    Ok((rows, next))
}
