//! The blob store on a real directory: chunked imports, dedup, the reader, old whole-file
//! blobs, and corruption.

use super::chunk::{self, noise, MAX_CHUNK};
use super::*;
use std::io::{Read, Seek, SeekFrom};

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("drover-blobs-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn import(blobs: &Blobs, data: &[u8]) -> (ImageFile, Stored) {
    blobs
        .import_counted(|w| w.write_all(data).map_err(ImageError::from))
        .unwrap()
}

fn read_all(blobs: &Blobs, id: &str) -> Vec<u8> {
    let mut out = Vec::new();
    blobs.open(id).unwrap().read_to_end(&mut out).unwrap();
    out
}

#[test]
fn a_second_version_stores_only_what_changed() {
    let d = tmpdir("dedup");
    let blobs = Blobs::new(&d);
    let v1 = noise(1, 3 << 20);
    let mut v2 = v1[..1 << 20].to_vec();
    v2.extend_from_slice(&noise(2, 100_000));
    v2.extend_from_slice(&v1[1 << 20..]);

    let (f1, s1) = import(&blobs, &v1);
    assert_eq!(
        f1.blob,
        blake3::hash(&v1).to_hex().as_str(),
        "the id is the whole hash"
    );
    assert_eq!(
        (f1.size, s1.new, s1.reused),
        (v1.len() as u64, v1.len() as u64, 0)
    );
    let (f2, s2) = import(&blobs, &v2);
    assert_eq!(s2.new + s2.reused, v2.len() as u64);
    // Around the insertion a few chunks are new; the rest are shared.
    assert!(s2.new < 100_000 + 4 * MAX_CHUNK as u64, "{s2:?}");
    assert!(s2.reused > 2 << 20, "{s2:?}");
    // The same bytes again add nothing.
    assert_eq!(import(&blobs, &v2).1.new, 0);

    assert_eq!(read_all(&blobs, &f1.blob), v1);
    assert_eq!(read_all(&blobs, &f2.blob), v2);
    assert!(blobs.contains(&f2.blob) && !blobs.contains(&"0".repeat(64)));
    let mut ids = vec![f1.blob.clone(), f2.blob.clone()];
    ids.sort();
    assert_eq!(blobs.list().unwrap(), ids);
    let stored = blobs.stored_bytes().unwrap();
    assert!(stored < (v1.len() + v2.len()) as u64, "{stored}");
    assert!(stored >= v1.len() as u64 + s2.new);
    // The figures per version, from the manifests.
    let usage = usage::usage(&[
        blobs.chunk_list(&f1.blob).unwrap(),
        blobs.chunk_list(&f2.blob).unwrap(),
    ]);
    assert_eq!(usage[1].new, s2.new);
    assert_eq!(usage[1].shared, s2.reused);
    // No temporary files are left.
    for dir in [blobs.dir().to_path_buf(), d.join("chunks")] {
        let temps = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with('.')
            })
            .count();
        assert_eq!(temps, 0, "{}", dir.display());
    }
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_reader_seeks_anywhere_across_chunks() {
    let d = tmpdir("seek");
    let blobs = Blobs::new(&d);
    let data = noise(3, 2 << 20);
    let (f, _) = import(&blobs, &data);
    let mut r = blobs.open(&f.blob).unwrap();
    assert_eq!(r.len(), data.len() as u64);
    let chunks = blobs.chunk_list(&f.blob).unwrap();
    assert!(chunks.len() > 4, "{} chunks", chunks.len());
    // Reads that start in one chunk and end in another, from both ends.
    let mut offset = 0u64;
    for &(_, len) in &chunks {
        offset += len;
        let start = offset.saturating_sub(10);
        let mut buf = [0; 20];
        r.seek(SeekFrom::Start(start)).unwrap();
        r.read_exact(&mut buf[..(data.len() as u64 - start).min(20) as usize])
            .unwrap();
        let end = (start as usize + 20).min(data.len());
        assert_eq!(&buf[..end - start as usize], &data[start as usize..end]);
    }
    let mut buf = [0; 7];
    assert_eq!(r.read_at(12_345, &mut buf).unwrap(), 7);
    assert_eq!(buf, data[12_345..12_352]);
    assert_eq!(r.seek(SeekFrom::End(-3)).unwrap(), data.len() as u64 - 3);
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, data[data.len() - 3..]);
    assert_eq!(r.read(&mut buf).unwrap(), 0, "end of blob");
    assert!(r.seek(SeekFrom::Current(-(data.len() as i64) - 1)).is_err());
    // An empty blob reads as empty.
    let (empty, _) = import(&blobs, b"");
    assert!(blobs.open(&empty.blob).unwrap().is_empty());
    assert!(read_all(&blobs, &empty.blob).is_empty());
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn whole_file_blobs_of_old_stores_still_read() {
    let d = tmpdir("whole");
    let blobs = Blobs::new(&d);
    let data = noise(4, 300_000);
    let id = blake3::hash(&data).to_hex().to_string();
    std::fs::create_dir_all(blobs.dir()).unwrap();
    std::fs::write(blobs.dir().join(&id), &data).unwrap();
    assert!(blobs.contains(&id));
    assert_eq!(blobs.list().unwrap(), vec![id.clone()]);
    assert_eq!(read_all(&blobs, &id), data);
    let mut r = blobs.open(&id).unwrap();
    let mut buf = [0; 5];
    r.read_at(299_995, &mut buf).unwrap();
    assert_eq!(buf, data[299_995..]);
    assert_eq!(
        blobs.chunk_list(&id).unwrap(),
        vec![(chunk::parse_hex(&id).unwrap(), data.len() as u64)]
    );
    // The same bytes imported now are shared with nothing (another form), but read the same.
    let (again, _) = import(&blobs, &data);
    assert_eq!(again.blob, id);
    assert_eq!(read_all(&blobs, &id), data);
    assert!(matches!(
        blobs.open(&"1".repeat(64)),
        Err(ImageError::Missing(_))
    ));
    assert!(matches!(blobs.open("../x"), Err(ImageError::Missing(_))));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_corrupt_chunk_is_an_error_not_data() {
    let d = tmpdir("corrupt");
    let blobs = Blobs::new(&d);
    let data = noise(5, 1 << 20);
    let (f, _) = import(&blobs, &data);
    let (first, len) = blobs.chunk_list(&f.blob).unwrap()[0];
    let path = reader::chunk_path(&d.join("chunks"), &first);
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, len);
    bytes[100] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let mut out = Vec::new();
    let e = blobs
        .open(&f.blob)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    // Later chunks still read.
    let mut r = blobs.open(&f.blob).unwrap();
    let mut buf = [0; 4];
    r.read_at(len, &mut buf).unwrap();
    assert_eq!(buf, data[len as usize..len as usize + 4]);
    assert!(blobs.read_chunk(&first).is_err());

    // A chunk that does not hash to its name is refused, and so is a manifest whose chunks
    // do not make up the blob it claims to be.
    let good = *blake3::hash(b"abc").as_bytes();
    assert!(matches!(
        blobs.put_chunk(&good, b"abd"),
        Err(ImageError::BadChunk(_))
    ));
    assert!(blobs.put_chunk(&good, b"abc").unwrap());
    assert!(!blobs.put_chunk(&good, b"abc").unwrap(), "stored once");
    let m = chunk::Manifest {
        size: 3,
        chunks: vec![chunk::ChunkRef { id: good, len: 3 }],
    };
    assert!(!blobs.adopt_manifest(&"2".repeat(64), &m).unwrap());
    assert!(!blobs.contains(&"2".repeat(64)));
    let id = blake3::hash(b"abc").to_hex().to_string();
    assert!(blobs.adopt_manifest(&id, &m).unwrap());
    assert_eq!(read_all(&blobs, &id), b"abc");
    // A manifest file that is not one is an error, not a panic.
    std::fs::write(
        blobs.dir().join(format!("{}.chunks", "3".repeat(64))),
        b"junk",
    )
    .unwrap();
    assert!(matches!(
        blobs.open(&"3".repeat(64)),
        Err(ImageError::Manifest { .. })
    ));
    std::fs::remove_dir_all(&d).unwrap();
}
