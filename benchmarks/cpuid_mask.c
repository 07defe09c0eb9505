/* Hide AVX-512 from CPUID in this process, so that ONNX Runtime's MLAS, which picks its kernels from CPUID when
 * it loads, runs its AVX2 ones (benchmarks/avx2_peers.py). Linux x86-64 with CPUID faulting (the `cpuid_fault`
 * flag): after arch_prctl(ARCH_SET_CPUID, 0) every CPUID in this thread and the threads it starts raises SIGSEGV;
 * the handler runs the real CPUID with faulting briefly off, clears the AVX-512 feature bits and the ZMM / opmask
 * state bits, and steps over the instruction. Any other SIGSEGV goes to the handler installed before. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

static struct sigaction previous;
static volatile unsigned long emulated;

static void masked_cpuid(unsigned leaf, unsigned subleaf, unsigned *a, unsigned *b, unsigned *c, unsigned *d) {
    __cpuid_count(leaf, subleaf, *a, *b, *c, *d);
    if (leaf == 7 && subleaf == 0) {
        /* AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL; VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ; 4VNNIW, 4FMAPS,
         * VP2INTERSECT, FP16 */
        *b &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        *c &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
        *d &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(23));
    } else if (leaf == 7 && subleaf == 1) {
        *a &= ~BIT(5); /* AVX512 BF16 */
    } else if (leaf == 0xd && subleaf == 0) {
        *a &= ~(BIT(5) | BIT(6) | BIT(7)); /* opmask, ZMM_Hi256, Hi16_ZMM state */
    }
}

static void on_segv(int signal, siginfo_t *info, void *context) {
    greg_t *registers = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)registers[REG_RIP];
    /* a faulting CPUID is a kernel-raised SIGSEGV at a readable instruction (a jump to an unmapped address is not) */
    if (info->si_code == SI_KERNEL && ip[0] == 0x0f && ip[1] == 0xa2) {
        unsigned a, b, c, d;
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
        masked_cpuid((unsigned)registers[REG_RAX], (unsigned)registers[REG_RCX], &a, &b, &c, &d);
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
        registers[REG_RAX] = a;
        registers[REG_RBX] = b;
        registers[REG_RCX] = c;
        registers[REG_RDX] = d;
        registers[REG_RIP] += 2;
        emulated++;
        return;
    }
    /* a real fault: return to the faulting instruction under the previous handler */
    sigaction(SIGSEGV, &previous, NULL);
    (void)signal;
}

/* 0 once CPUID faults to the handler; -1 (errno set) when the kernel or CPU cannot fault CPUID */
int sqnxt_hide_avx512(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_segv;
    action.sa_flags = SA_SIGINFO;
    if (sigaction(SIGSEGV, &action, &previous) != 0) return -1;
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        sigaction(SIGSEGV, &previous, NULL);
        return -1;
    }
    return 0;
}

/* AVX512F as this process's CPUID now reports it (1 or 0) */
int sqnxt_cpuid_avx512f(void) {
    unsigned a, b, c, d;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & BIT(16)) != 0;
}

unsigned long sqnxt_emulated_cpuids(void) { return emulated; }
