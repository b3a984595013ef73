/*
 * LD_PRELOAD for Debian's user-mode Linux 6.1 (linux.uml), loaded by
 * harness/uml.py, built into build/uml-xstate.so on first use.
 *
 * Why: UML keeps a guest process's vector registers in an 832-byte buffer
 * (x87/SSE plus AVX) and moves them with ptrace(PTRACE_{GET,SET}REGSET,
 * NT_X86_XSTATE). The host kernel accepts a SETREGSET only with its whole
 * XSAVE area (arch/x86/kernel/fpu/regset.c: count != fpu_user_cfg.max_size
 * -> EFAULT), which is larger on CPUs with AVX-512 or AMX: there UML's first
 * user process dies ("ptrace set fp regs failed, errno = 14"). Making UML
 * fall back to PTRACE_SETFPREGS is no cure: that loses the upper halves of
 * the YMM registers at every system call, and glibc's string functions
 * then go wrong (printf stops finding '%').
 *
 * What: this wraps ptrace() and moves the whole XSAVE area instead, UML's
 * part of it from UML's buffer and the rest (AVX-512, AMX state) as the
 * process has it, so every register survives UML's traps. All other
 * requests pass through unchanged. UML's ptrace calls come from one thread,
 * hence the one static buffer.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <stdarg.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

static char area[1 << 16];   /* the host's whole XSAVE area (AMX: about 11 KiB) */

long ptrace(enum __ptrace_request req, ...)
{
	static long (*next)(enum __ptrace_request, pid_t, void *, void *);
	va_list ap;

	va_start(ap, req);
	pid_t pid = va_arg(ap, pid_t);
	void *addr = va_arg(ap, void *);
	void *data = va_arg(ap, void *);
	va_end(ap);
	if (!next)
		next = (long (*)(enum __ptrace_request, pid_t, void *, void *))dlsym(RTLD_NEXT, "ptrace");
	if ((req == PTRACE_GETREGSET || req == PTRACE_SETREGSET) && (long)addr == NT_X86_XSTATE) {
		struct iovec *iov = data, whole = { area, sizeof area };
		long r = next(PTRACE_GETREGSET, pid, addr, &whole);   /* whole.iov_len: the host's size */

		if (r < 0)
			return r;
		if (iov->iov_len > whole.iov_len)
			iov->iov_len = whole.iov_len;
		if (req == PTRACE_GETREGSET) {
			memcpy(iov->iov_base, area, iov->iov_len);
			return 0;
		}
		memcpy(area, iov->iov_base, iov->iov_len);
		return next(PTRACE_SETREGSET, pid, addr, &whole);
	}
	return next(req, pid, addr, data);
}
