/*
 * mmap of a remote file: the program's descriptor is a placeholder memfd, empty until something
 * fills it, so a mapping would read zeros (or fault past the end, since fstat reports the remote
 * size). Before mapping it, its content is copied in (files_materialize, as for exec), once per
 * file; later reads still go through the layer. The mapping itself is the kernel's, made with the
 * raw system call so that this hook needs nothing resolved (allocators call mmap very early).
 * Writes through a shared mapping stay in the placeholder: they do not reach the target.
 */
#define _GNU_SOURCE
#include "files.h"
#include "layer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static void before_map(int fd, int flags)
{
    if (fd < 0 || (flags & MAP_ANONYMOUS) || layer_inside()) return;
    struct file_obj *f = files_get(fd);
    if (!f) return;
    if (!f->is_dir && (f->flags & O_ACCMODE) != O_WRONLY) files_materialize(fd, f);
    fdtable_put(&f->obj);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    before_map(fd, flags);
    return (void *)syscall(SYS_mmap, addr, len, prot, flags, fd, off);
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    return mmap(addr, len, prot, flags, fd, off);
}
