// Kernel structure accessors for the dockwatch probes.
//
// Why C: the Rust BPF target cannot emit BPF CO-RE relocations, clang can.
// Every struct below is declared with only the fields we read and
// `preserve_access_index`, so clang records "field X of struct Y" instead of
// a byte offset; at load time aya rewrites each access against the running
// kernel's BTF (/sys/kernel/btf/vmlinux). Nothing here depends on this
// kernel's layout. The file is compiled to LLVM bitcode and linked into the
// Rust programs by bpf-linker, which inlines these small functions.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;

static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;
static void *(*bpf_get_current_task_btf)(void) = (void *)158;
static void *(*bpf_task_pt_regs)(void *task) = (void *)175;

#define READ(dst, field) bpf_probe_read_kernel(&(dst), sizeof(dst), __builtin_preserve_access_index(&(field)))
#define EXISTS(field) __builtin_preserve_field_info(field, 2 /* BPF_FIELD_EXISTS */)

struct kuid_t { __u32 val; } __attribute__((preserve_access_index));
struct kgid_t { __u32 val; } __attribute__((preserve_access_index));

struct cred {
	struct kuid_t uid;
	struct kgid_t gid;
	struct kuid_t euid;
} __attribute__((preserve_access_index));

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct super_block {
	__u32 s_dev;
} __attribute__((preserve_access_index));

struct hlist_node {
	struct hlist_node *next;
} __attribute__((preserve_access_index));

struct hlist_head {
	struct hlist_node *first;
} __attribute__((preserve_access_index));

struct inode {
	__u16 i_mode;
	unsigned long i_ino;
	struct super_block *i_sb;
	// In an anonymous union in the kernel; CO-RE finds it there.
	struct hlist_head i_dentry;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
	union {
		struct hlist_node d_alias;
	} d_u;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
	struct super_block *mnt_sb;
} __attribute__((preserve_access_index));

struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
	struct inode *f_inode;
	unsigned int f_mode;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct fs_struct {
	struct path root;
	struct path pwd;
} __attribute__((preserve_access_index));

struct mm_struct {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct kernfs_node {
	const char *name;
} __attribute__((preserve_access_index));

struct cgroup {
	struct kernfs_node *kn;
} __attribute__((preserve_access_index));

struct cgroup_subsys_state {
	struct cgroup *cgroup;
} __attribute__((preserve_access_index));

struct css_set {
	struct cgroup_subsys_state *subsys[1];
	struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));

struct sock_common {
	unsigned short skc_family;
	volatile unsigned char skc_state;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

// af_unix's socket: the path it is bound to.
struct unix_sock {
	struct path path;
} __attribute__((preserve_access_index));

#if defined(__TARGET_ARCH_x86)
struct thread_info {
	__u32 status;
} __attribute__((preserve_access_index));

struct pt_regs {
	unsigned long di;
	unsigned long si;
	unsigned long dx;
	unsigned long r10;
	unsigned long r8;
	unsigned long r9;
	unsigned long orig_ax;
} __attribute__((preserve_access_index));
#endif

struct task_struct {
#if defined(__TARGET_ARCH_x86)
	struct thread_info thread_info;
#endif
	__s32 pid;
	__s32 tgid;
	struct task_struct *real_parent;
	const struct cred *cred;
	struct mm_struct *mm;
	struct fs_struct *fs;
	struct files_struct *files;
	struct kuid_t loginuid;
	struct css_set *cgroups;
} __attribute__((preserve_access_index));

// ---- files and dentries ----------------------------------------------------

// The `struct file` behind descriptor `fd` of `task`, or 0.
struct file *dw_task_file(struct task_struct *task, __u32 fd)
{
	struct files_struct *files = 0;
	struct fdtable *fdt = 0;
	struct file **fds = 0;
	struct file *file = 0;
	__u32 max = 0;
	READ(files, task->files);
	if (!files)
		return 0;
	READ(fdt, files->fdt);
	if (!fdt)
		return 0;
	READ(max, fdt->max_fds);
	if (fd >= max)
		return 0;
	READ(fds, fdt->fd);
	if (!fds)
		return 0;
	bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]);
	return file;
}

struct dentry *dw_file_dentry(struct file *file)
{
	struct dentry *d = 0;
	READ(d, file->f_path.dentry);
	return d;
}

struct vfsmount *dw_file_vfsmount(struct file *file)
{
	struct vfsmount *m = 0;
	READ(m, file->f_path.mnt);
	return m;
}

__u32 dw_file_fmode(struct file *file)
{
	__u32 mode = 0;
	READ(mode, file->f_mode);
	return mode;
}

struct dentry *dw_dentry_parent(struct dentry *d)
{
	struct dentry *p = 0;
	READ(p, d->d_parent);
	return p;
}

const unsigned char *dw_dentry_name(struct dentry *d)
{
	const unsigned char *name = 0;
	READ(name, d->d_name.name);
	return name;
}

struct inode *dw_dentry_inode(struct dentry *d)
{
	struct inode *i = 0;
	READ(i, d->d_inode);
	return i;
}

__u64 dw_inode_ino(struct inode *i)
{
	unsigned long ino = 0;
	READ(ino, i->i_ino);
	return ino;
}

__u32 dw_inode_mode(struct inode *i)
{
	__u16 mode = 0;
	READ(mode, i->i_mode);
	return mode;
}

__u32 dw_inode_dev(struct inode *i)
{
	struct super_block *sb = 0;
	__u32 dev = 0;
	READ(sb, i->i_sb);
	if (!sb)
		return 0;
	READ(dev, sb->s_dev);
	return dev;
}

// ---- mounts ----------------------------------------------------------------

struct dentry *dw_vfsmount_root(struct vfsmount *m)
{
	struct dentry *root = 0;
	READ(root, m->mnt_root);
	return root;
}

// Device of the file system mounted here: the same for every inode below
// the mount's root, so a walk reads it once per mount, not per level.
__u32 dw_vfsmount_dev(struct vfsmount *m)
{
	struct super_block *sb = 0;
	__u32 dev = 0;
	READ(sb, m->mnt_sb);
	if (!sb)
		return 0;
	READ(dev, sb->s_dev);
	return dev;
}

// `struct mount` embeds the `vfsmount` the rest of the kernel hands out;
// container_of with a relocated offset.
static struct mount *mount_of(struct vfsmount *m)
{
	struct mount *zero = 0;
	__u64 off = (__u64)__builtin_preserve_access_index(&zero->mnt);
	return (struct mount *)((char *)m - off);
}

// The vfsmount this one is mounted on (itself at the namespace root).
struct vfsmount *dw_vfsmount_parent(struct vfsmount *m)
{
	struct mount *mnt = mount_of(m);
	struct mount *parent = 0;
	READ(parent, mnt->mnt_parent);
	if (!parent)
		return m;
	return (struct vfsmount *)__builtin_preserve_access_index(&parent->mnt);
}

// The dentry (in the parent mount) this mount covers.
struct dentry *dw_vfsmount_mountpoint(struct vfsmount *m)
{
	struct mount *mnt = mount_of(m);
	struct dentry *d = 0;
	READ(d, mnt->mnt_mountpoint);
	return d;
}

// ---- the current task -----------------------------------------------------

__u32 dw_task_tgid(struct task_struct *t)
{
	__s32 v = 0;
	READ(v, t->tgid);
	return v;
}

__u32 dw_task_ppid(struct task_struct *t)
{
	struct task_struct *parent = 0;
	__s32 v = 0;
	READ(parent, t->real_parent);
	if (!parent)
		return 0;
	READ(v, parent->tgid);
	return v;
}

__u32 dw_task_euid(struct task_struct *t)
{
	const struct cred *c = 0;
	__u32 v = 0;
	READ(c, t->cred);
	if (!c)
		return 0;
	READ(v, c->euid.val);
	return v;
}

// The audit login uid; u32::MAX when the kernel has no CONFIG_AUDITSYSCALL.
__u32 dw_task_loginuid(struct task_struct *t)
{
	__u32 v = (__u32)-1;
	if (EXISTS(t->loginuid))
		READ(v, t->loginuid.val);
	return v;
}

struct file *dw_task_exe_file(struct task_struct *t)
{
	struct mm_struct *mm = 0;
	struct file *f = 0;
	READ(mm, t->mm);
	if (!mm)
		return 0;
	READ(f, mm->exe_file);
	return f;
}

struct dentry *dw_task_cwd_dentry(struct task_struct *t)
{
	struct fs_struct *fs = 0;
	struct dentry *d = 0;
	READ(fs, t->fs);
	if (!fs)
		return 0;
	READ(d, fs->pwd.dentry);
	return d;
}

struct vfsmount *dw_task_cwd_vfsmount(struct task_struct *t)
{
	struct fs_struct *fs = 0;
	struct vfsmount *m = 0;
	READ(fs, t->fs);
	if (!fs)
		return 0;
	READ(m, fs->pwd.mnt);
	return m;
}

// Leaf name of the task's cgroup: the unified hierarchy's when the task is
// placed there, else the first v1 hierarchy's (Docker on hybrid hosts).
const char *dw_task_cgroup_name(struct task_struct *t)
{
	struct css_set *cs = 0;
	struct cgroup *cg = 0;
	struct cgroup_subsys_state *css = 0;
	struct kernfs_node *kn = 0;
	const char *name = 0;
	READ(cs, t->cgroups);
	if (!cs)
		return 0;
	READ(css, cs->subsys[0]);
	if (css)
		READ(cg, css->cgroup);
	if (!cg)
		READ(cg, cs->dfl_cgrp);
	if (!cg)
		return 0;
	READ(kn, cg->kn);
	if (!kn)
		return 0;
	READ(name, kn->name);
	return name;
}

const char *dw_task_dfl_cgroup_name(struct task_struct *t)
{
	struct css_set *cs = 0;
	struct cgroup *cg = 0;
	struct kernfs_node *kn = 0;
	const char *name = 0;
	READ(cs, t->cgroups);
	if (!cs)
		return 0;
	READ(cg, cs->dfl_cgrp);
	if (!cg)
		return 0;
	READ(kn, cg->kn);
	if (!kn)
		return 0;
	READ(name, kn->name);
	return name;
}

// ---- inodes, sockets and the call in progress (inode hooks) ---------------

// A dentry of `inode` (its first alias), or 0 for an inode no name reaches
// yet (one being created or read from disk).
struct dentry *dw_inode_alias(struct inode *i)
{
	struct hlist_node *first = 0;
	struct dentry *zero = 0;
	__u64 off = (__u64)__builtin_preserve_access_index(&zero->d_u.d_alias);
	READ(first, i->i_dentry.first);
	if (!first)
		return 0;
	return (struct dentry *)((char *)first - off);
}

// For a listening af_unix socket: the dentry and mount of the path it is
// bound to, else 0. Checked first: the tracepoint fires for every socket.
struct dentry *dw_unix_listener_path(struct sock *sk, struct vfsmount **mnt)
{
	unsigned short family = 0;
	unsigned char state = 0;
	struct unix_sock *u = (struct unix_sock *)sk;
	struct dentry *d = 0;
	READ(family, sk->__sk_common.skc_family);
	if (family != 1 /* AF_UNIX */)
		return 0;
	READ(state, sk->__sk_common.skc_state);
	if (state != 10 /* TCP_LISTEN */)
		return 0;
	READ(d, u->path.dentry);
	READ(*mnt, u->path.mnt);
	return d;
}

// The system call the current task is in, from the registers it entered
// the kernel with: its number (or -1: none, a 32-bit task's, or an
// architecture the shim does not know) and its six arguments.
__s64 dw_current_syscall(__u64 *args)
{
#if defined(__TARGET_ARCH_x86)
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = bpf_task_pt_regs(task);
	__s64 nr = -1;
	__u32 status = 0;
	if (!regs)
		return -1;
	// A 32-bit task's numbers are another table's (TS_COMPAT): none.
	if (EXISTS(task->thread_info.status)) {
		READ(status, task->thread_info.status);
		if (status & 0x2)
			return -1;
	}
	READ(nr, regs->orig_ax);
	READ(args[0], regs->di);
	READ(args[1], regs->si);
	READ(args[2], regs->dx);
	READ(args[3], regs->r10);
	READ(args[4], regs->r8);
	READ(args[5], regs->r9);
	return nr;
#else
	return -1;
#endif
}

// The root directory's mount of the task (for a path of an inode no call
// argument names).
struct vfsmount *dw_task_root_vfsmount(struct task_struct *t)
{
	struct fs_struct *fs = 0;
	struct vfsmount *m = 0;
	READ(fs, t->fs);
	if (!fs)
		return 0;
	READ(m, fs->root.mnt);
	return m;
}

struct super_block *dw_vfsmount_sb(struct vfsmount *m)
{
	struct super_block *sb = 0;
	READ(sb, m->mnt_sb);
	return sb;
}

struct super_block *dw_inode_sb(struct inode *i)
{
	struct super_block *sb = 0;
	READ(sb, i->i_sb);
	return sb;
}
