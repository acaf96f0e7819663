#!/bin/sh
# /init of the NFS client test VM (qemu-tests/nfs.rs): mounts drover's export with the Linux
# kernel client as NFSv4.0, NFSv4.1 and NFSv4.2 and exercises each mount; every check prints
# `NFSTEST <version> <check> OK|FAIL [detail]` on the serial console, then `NFSTEST-END`.
# /locktest is qemu-tests/nfs-locktest.c, compiled statically by the test.
# Kernel command line: nfstest.server=IP nfstest.ip=IP/PREFIX. The export is /t, read-write,
# root squashed, its top directory open to all (0777).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
server= ; ip=
for w in $(cat /proc/cmdline); do
  case "$w" in
    nfstest.server=*) server=${w#nfstest.server=} ;;
    nfstest.ip=*) ip=${w#nfstest.ip=} ;;
  esac
done
kver=$(uname -r)
for m in virtio_pci virtio_net nfsv4; do modprobe "$m" || echo "NFSTEST - modprobe-$m FAIL"; done
ip link set lo up
ip link set eth0 up
ip addr add "$ip" dev eth0
hostname nfstest

check() { # VERSION NAME COMMAND...
  v=$1; name=$2; shift 2
  if out=$("$@" 2>&1); then
    echo "NFSTEST $v $name OK"
  else
    echo "NFSTEST $v $name FAIL $(echo "$out" | tr '\n' ' ' | cut -c1-300)"
  fi
}

t_write_read() {
  echo "hello from $1" >f && [ "$(cat f)" = "hello from $1" ] || return 1
  # 3 MiB of varied data through write and read-back.
  i=0; : >pattern
  while [ $i -lt 3 ]; do dd if=/dev/urandom bs=1M count=1 2>/dev/null >>pattern; i=$((i+1)); done
  a=$(md5sum <pattern); sync; echo 3 >/proc/sys/vm/drop_caches; b=$(md5sum <pattern)
  [ "$a" = "$b" ] || { echo "checksum $a != $b"; return 1; }
  [ "$(stat -c %s pattern)" = 3145728 ]
}

t_append_truncate() {
  printf abc >g && printf def >>g && [ "$(cat g)" = abcdef ] || return 1
  : >g && [ "$(stat -c %s g)" = 0 ]
}

t_rename_remove() {
  echo x >old && mv old new && [ ! -e old ] && [ "$(cat new)" = x ] || return 1
  mkdir -p dir1 && mv new dir1/moved && [ -f dir1/moved ] || return 1
  rm dir1/moved && rmdir dir1 && [ ! -e dir1 ] || return 1
  mkdir full && : >full/x && ! rmdir full 2>/dev/null
}

t_links() {
  echo data >target && ln target hard && [ "$(stat -c %h target)" = 2 ] || return 1
  [ "$(stat -c %i target)" = "$(stat -c %i hard)" ] || return 1
  ln -s target soft && [ "$(readlink soft)" = target ] && [ "$(cat soft)" = data ] || return 1
  rm target && [ "$(cat hard)" = data ] && [ "$(stat -c %h hard)" = 1 ]
}

t_permissions() {
  # The export squashes root to nobody: files root makes belong to 65534 and root cannot give
  # them away; uid 1000 keeps its own files, and a 0600 file of uid 1000 is closed to others.
  : >byroot && [ "$(stat -c %u byroot)" = 65534 ] || { echo "root made uid $(stat -c %u byroot)"; return 1; }
  if chown 1000 byroot 2>/dev/null; then echo "squashed root gave a file away"; return 1; fi
  mkdir -m 0777 shared && su tester -c "echo secret >$PWD/shared/t && chmod 600 $PWD/shared/t" || return 1
  [ "$(stat -c %u:%a shared/t)" = 1000:600 ] || { echo "shared/t is $(stat -c %u:%a shared/t)"; return 1; }
  [ "$(su tester -c "cat $PWD/shared/t")" = secret ] || { echo "the owner cannot read"; return 1; }
  if cat shared/t >/dev/null 2>&1; then echo "nobody read a 0600 file of uid 1000"; return 1; fi
  if echo x 2>/dev/null >>shared/t; then echo "nobody wrote it"; return 1; fi
  su tester -c "chmod 644 $PWD/shared/t" && cat shared/t >/dev/null
}

t_sparse() {
  # 5 GiB + 1 byte, sparse, with markers past 4 GiB.
  dd if=/dev/zero of=big bs=1 count=1 seek=5368709120 2>/dev/null || return 1
  printf MARK | dd of=big bs=1 seek=4831838208 conv=notrunc 2>/dev/null || return 1
  [ "$(stat -c %s big)" = 5368709121 ] || { echo "size $(stat -c %s big)"; return 1; }
  sync; echo 3 >/proc/sys/vm/drop_caches
  [ "$(dd if=big bs=1 skip=4831838208 count=4 2>/dev/null)" = MARK ] || return 1
  rm big
}

t_bigdir() {
  n=$(ls ../bigdir | wc -l)
  [ "$n" = 10000 ] || { echo "listed $n"; return 1; }
  ls -l ../bigdir >/dev/null && [ -f ../bigdir/e09999 ]
}

t_create_many() {
  mkdir many && i=0
  while [ $i -lt 500 ]; do : >many/f$i; i=$((i+1)); done
  [ "$(ls many | wc -l)" = 500 ] && rm -r many
}

t_concurrent() {
  dd if=/dev/urandom of=shared.bin bs=1M count=4 2>/dev/null && sync || return 1
  want=$(md5sum <shared.bin)
  echo 3 >/proc/sys/vm/drop_caches
  for i in 1 2 3 4; do (md5sum <shared.bin >sum.$i) & done
  wait
  for i in 1 2 3 4; do [ "$(cat sum.$i)" = "$want" ] || { echo "reader $i"; return 1; }; done
}

t_locks() {
  # /locktest (qemu-tests/nfs-locktest.c): fcntl locks between processes.
  /locktest "$PWD/lockfile"
}

for v in 4.0 4.1 4.2; do
  mkdir -p "/mnt/$v"
  if ! mount -t nfs4 -o "vers=$v,addr=$server,proto=tcp,timeo=50,retrans=3" "$server:/t" "/mnt/$v"; then
    echo "NFSTEST $v mount FAIL"
    continue
  fi
  echo "NFSTEST $v mount OK"
  grep " /mnt/$v " /proc/mounts
  mkdir -p "/mnt/$v/work-$v" && cd "/mnt/$v/work-$v" || { echo "NFSTEST $v workdir FAIL"; continue; }
  check $v write-read t_write_read $v
  check $v append-truncate t_append_truncate
  check $v rename-remove t_rename_remove
  check $v links t_links
  check $v permissions t_permissions
  check $v sparse-5g t_sparse
  check $v bigdir-10000 t_bigdir
  check $v create-500 t_create_many
  check $v concurrent-readers t_concurrent
  check $v locks t_locks
  echo "from $v" >"/mnt/$v/written-by-$v"
  cd /
  sync
  check $v umount umount "/mnt/$v"
done
# Restart phase: drover crashes and restarts (the test does it on seeing NFSTEST-RESTART-READY) while
# all versions are mounted with a file held open; afterwards the open file still reads,
# handles from before the restart still work and new files can be made. Soft mounts, so a
# server that never recovers fails the checks instead of hanging them.
for v in 4.0 4.1 4.2; do
  mkdir -p "/mnt/r$v"
  mount -t nfs4 -o "vers=$v,addr=$server,proto=tcp,soft,timeo=100,retrans=4" "$server:/t" "/mnt/r$v" ||
    echo "NFSTEST $v restart-mount FAIL"
  echo "kept open $v" >"/mnt/r$v/open-$v"
  ls "/mnt/r$v/work-$v" >/dev/null
done
exec 3<"/mnt/r4.0/open-4.0" 4<"/mnt/r4.1/open-4.1" 5<"/mnt/r4.2/open-4.2"
echo "NFSTEST-RESTART-READY"
sleep 6
check 4.0 restart-open-file sh -c 'read l <&3 && [ "$l" = "kept open 4.0" ]'
check 4.1 restart-open-file sh -c 'read l <&4 && [ "$l" = "kept open 4.1" ]'
check 4.2 restart-open-file sh -c 'read l <&5 && [ "$l" = "kept open 4.2" ]'
for v in 4.0 4.1 4.2; do
  check $v restart-old-handle sh -c "[ \"\$(cat /mnt/r$v/work-$v/f)\" = 'hello from $v' ]"
  check $v restart-create sh -c "echo new >/mnt/r$v/after-restart-$v && [ \"\$(cat /mnt/r$v/after-restart-$v)\" = new ]"
done
exec 3<&- 4<&- 5<&-
for v in 4.0 4.1 4.2; do umount "/mnt/r$v" || echo "NFSTEST $v restart-umount FAIL"; done
echo "NFSTEST-END"
sync
poweroff -f
