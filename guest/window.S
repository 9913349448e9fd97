/*
 * hil probe guest: the measurement window.
 *
 * Every op lives in its own .text.window.<op> section; the linker script
 * places them contiguously between __window_start and __window_end and
 * brackets each with __op_<op>_start/__op_<op>_end.  The only instructions
 * in here that exit to the hypervisor are the op's own instruction(s):
 * loop control is plain register arithmetic, and the stack/data touched
 * (ret address, ISR frame, the irq counter) sit in prefaulted pages.
 *
 * Calling convention (SysV): rdi = iteration count (> 0), rsi = extra arg.
 *
 * The device ops (dev-msi, dev-dma, net-rx, net-tx) are C functions that devices.c puts
 * into their .text.window.<op> sections; their interrupt handlers are here, in the same
 * sections.
 */
#include "devconf.h"

/* An interrupt handler that counts its interrupt in \counter and writes x2APIC EOI; each op
 * that takes interrupts has its own copy inside its range, so the EOI exit counts for it. */
	.macro COUNTING_ISR counter
	push	%rax
	push	%rcx
	push	%rdx
	incq	\counter(%rip)
	mov	$0x80b, %ecx            /* x2APIC EOI, value must be 0 */
	xor	%eax, %eax
	xor	%edx, %edx
	wrmsr
	pop	%rdx
	pop	%rcx
	pop	%rax
	iretq
	.endm

	.section .text.window.cpuid, "ax"
	.globl op_cpuid
op_cpuid:                       /* CPUID leaf 0 */
	mov	%rbx, %r8               /* cpuid clobbers rbx (callee-saved) */
1:	xor	%eax, %eax
	xor	%ecx, %ecx
	cpuid
	dec	%rdi
	jnz	1b
	mov	%r8, %rbx
	ret

	.section .text.window.pio_kernel, "ax"
	.globl op_pio_kernel
op_pio_kernel:                  /* read ELCR (in-kernel PIC under KVM); value ignored */
	mov	$0x4d0, %edx            /* port > 0xff: needs the %dx form */
1:	inb	%dx, %al
	dec	%rdi
	jnz	1b
	ret

	.section .text.window.pio_user, "ax"
	.globl op_pio_user
op_pio_user:                    /* write to unassigned port 0x1234: QEMU userspace */
	mov	$0x1234, %edx
	xor	%eax, %eax
1:	outb	%al, %dx
	dec	%rdi
	jnz	1b
	ret

	.section .text.window.msr, "ax"
	.globl op_msr
op_msr:                         /* rdmsr IA32_APIC_BASE */
1:	mov	$0x1b, %ecx
	rdmsr
	dec	%rdi
	jnz	1b
	ret

	.section .text.window.hlt, "ax"
	.globl op_hlt
op_hlt:                         /* rsi = TMICT value; LVT timer/divide set up outside */
	mov	hlt_timer_irqs(%rip), %r9
1:	inc	%r9                     /* the timer irq count this iteration waits for */
	mov	$0x838, %ecx            /* x2APIC TMICT: arm one-shot timer */
	mov	%esi, %eax
	xor	%edx, %edx
	wrmsr
2:	incq	hlt_executed(%rip)
	sti
	hlt                             /* sti shadow: the irq can only land after hlt */
	cli
	/* With HLT exiting off the guest can wake from hlt without its interrupt (a host
	 * interrupt exits and re-enters after the hlt): halt again, as an OS idle loop does. */
	cmp	hlt_timer_irqs(%rip), %r9
	ja	2b
	dec	%rdi
	jnz	1b
	ret

	.globl hlt_timer_isr
hlt_timer_isr:                  /* vector 0x40, still inside the hlt op range */
	COUNTING_ISR hlt_timer_irqs

	.section .text.window.kicks, "ax"
	.globl op_kicks
op_kicks:                       /* rdi = kick interrupts to wait for; interrupts on, no exits */
	mov	kick_irqs(%rip), %r9
	add	%rdi, %r9
	sti
1:	cmp	kick_irqs(%rip), %r9    /* a plain load loop: no PAUSE (TCG's SVM intercepts each one) */
	ja	1b
	cli
	ret

	.globl kick_isr
kick_isr:                       /* vector 0x50: a kick's interrupt (MSI, IPI); still in the kicks range */
	COUNTING_ISR kick_irqs

	.section .text.window.ipi_race, "ax"
	.globl op_ipi_race
op_ipi_race:                    /* the kicked vCPU: spin with interrupts on until the kicker is done */
	sti
1:	cmpq	$0, race_done(%rip)
	je	1b
	cli
	ret

	.globl race_isr
race_isr:                       /* kick A (0x50) of an ipi-race pair; the kicker watches the counts */
	push	%rax
	push	%rcx
	push	%rdx
	push	%rsi
	lea	race_irqs_a(%rip), %rsi
	jmp	race_eoi

	.globl race_isr_b
race_isr_b:                     /* kick B (0x60): the one aimed at A's EOI exit */
	push	%rax
	push	%rcx
	push	%rdx
	push	%rsi
	lea	race_irqs_b(%rip), %rsi
race_eoi:
	rdtsc
	shl	$32, %rdx
	or	%rax, %rdx
	mov	%rdx, 8(%rsi)           /* when it was taken (race_at_a/_b), stored before the count */
	incq	(%rsi)                  /* the kicker reads the time once it sees the count move */
	incq	kick_irqs(%rip)
	mov	%rdx, %rsi
	mov	$0x80b, %ecx            /* x2APIC EOI: its exit and re-entry are what kick B races */
	xor	%eax, %eax
	xor	%edx, %edx
	wrmsr
	rdtsc                           /* back in the guest: how long the EOI exit took */
	shl	$32, %rdx
	or	%rax, %rdx
	sub	%rsi, %rdx
	mov	%rdx, race_eoi_cost(%rip)
	pop	%rsi
	pop	%rdx
	pop	%rcx
	pop	%rax
	iretq

/* cli-window: hold IF=0 in windows while hil sends MSIs from QEMU's I/O thread. The handler
 * looks at where it interrupted (the saved RIP and RFLAGS of its frame): a maskable interrupt
 * must never be taken inside cli..sti's shadow; one that arrived in a window waits there and is
 * taken right after the shadow (cli_window_open). rdi = interrupts to wait for, rsi = window
 * length (TSC ticks), rdx = give up after this many ticks without a new interrupt. IF is 1 only
 * from the sti's shadow to the next cli: a handful of instructions per window. */
	.section .text.window.cli_window, "ax"
	.globl op_cli_window
op_cli_window:
	push	%rbx
	mov	%rdx, %r11              /* idle timeout (rdtsc clobbers rdx) */
	mov	%rsi, %r10              /* window length */
	mov	cli_window_irqs(%rip), %r9
	add	%rdi, %r9               /* the count to reach */
	mov	cli_window_irqs(%rip), %rbx     /* the count at the last progress ... */
	rdtsc
	shl	$32, %rdx
	or	%rax, %rdx
	mov	%rdx, %r8               /* ... and its time */
1:	cli
	.globl cli_window_masked
cli_window_masked:              /* from here up to cli_window_open: IF=0 (or the sti's shadow) */
	incq	cli_window_windows(%rip)
	rdtsc
	shl	$32, %rdx
	or	%rax, %rdx
	mov	%rdx, %rsi              /* the window's start */
2:	rdtsc
	shl	$32, %rdx
	or	%rax, %rdx
	sub	%rsi, %rdx
	cmp	%r10, %rdx
	jb	2b
	sti
	nop                             /* the sti's shadow: nothing is taken before it retires */
	.globl cli_window_open
cli_window_open:                /* an interrupt pending across the window is taken here */
	nop
	nop
	nop
	.globl cli_window_open_end
cli_window_open_end:            /* loop control, IF=1 */
	mov	cli_window_irqs(%rip), %rax
	cmp	%rax, %r9
	jbe	3f                      /* all taken */
	cmp	%rax, %rbx
	je	4f
	mov	%rax, %rbx              /* progress: the idle clock starts again */
	rdtsc
	shl	$32, %rdx
	or	%rax, %rdx
	mov	%rdx, %r8
	jmp	1b
4:	rdtsc
	shl	$32, %rdx
	or	%rax, %rdx
	sub	%r8, %rdx
	cmp	%r11, %rdx
	jb	1b
3:	cli
	pop	%rbx
	ret

	.globl cli_window_isr
cli_window_isr:                 /* vector 0x50 during cli-window; still in the op's range */
	push	%rax
	push	%rcx
	push	%rdx
	mov	24(%rsp), %rax          /* the frame: RIP, CS, RFLAGS, RSP, SS */
	testl	$0x200, 40(%rsp)        /* RFLAGS.IF of the interrupted code */
	jz	5f
	lea	cli_window_masked(%rip), %rcx
	cmp	%rcx, %rax
	jb	6f                      /* before the cli: IF=1 */
	lea	cli_window_open(%rip), %rcx
	cmp	%rcx, %rax
	jb	5f                      /* cli .. the sti's shadow */
	lea	cli_window_open_end(%rip), %rcx
	cmp	%rcx, %rax
	jae	6f
	incq	cli_window_at_sti(%rip) /* pending across the window, taken as IF became 1 */
	jmp	6f
5:	incq	cli_window_masked_irqs(%rip)
	cmpq	$0, cli_window_masked_rip(%rip)
	jne	6f
	mov	%rax, cli_window_masked_rip(%rip)
6:	incq	cli_window_irqs(%rip)
	mov	$0x80b, %ecx            /* x2APIC EOI */
	xor	%eax, %eax
	xor	%edx, %edx
	wrmsr
	pop	%rdx
	pop	%rcx
	pop	%rax
	iretq

/* A device op's interrupt handler: the TSC at entry goes to dev_isr_tsc[\counter] (the first
 * DEV_MAX_SAMPLES of them), \counter counts the interrupt; with \ack, dev_ack_val is written
 * to the 32-bit MMIO register at dev_ack_reg (edu's interrupt acknowledge); then x2APIC EOI.
 * Each op has its own copy inside its range, so the EOI exit (and the ack) count for it. */
	.macro TIMED_ISR counter, ack
	push	%rax
	push	%rcx
	push	%rdx
	rdtsc
	shl	$32, %rdx
	or	%rax, %rdx
	mov	\counter(%rip), %rax
	cmp	$DEV_MAX_SAMPLES, %rax
	jae	1f
	mov	dev_isr_tsc(%rip), %rcx
	mov	%rdx, (%rcx,%rax,8)
1:	inc	%rax
	mov	%rax, \counter(%rip)
	.if \ack
	mov	dev_ack_reg(%rip), %rcx
	mov	dev_ack_val(%rip), %eax
	mov	%eax, (%rcx)
	.endif
	mov	$0x80b, %ecx            /* x2APIC EOI */
	xor	%eax, %eax
	xor	%edx, %edx
	wrmsr
	pop	%rdx
	pop	%rcx
	pop	%rax
	iretq
	.endm

	.section .text.window.dev_msi, "ax"
	.globl dev_msi_isr
dev_msi_isr:                    /* EDU_VECTOR during dev-msi */
	TIMED_ISR dev_irqs, 1

	.section .text.window.dev_dma, "ax"
	.globl dev_dma_isr
dev_dma_isr:                    /* EDU_VECTOR during dev-dma */
	TIMED_ISR dev_irqs, 1

	.section .text.window.net_rx, "ax"
	.globl net_rx_isr
net_rx_isr:                     /* NET_RX_VECTOR: MSI-X needs no ack */
	TIMED_ISR net_rx_irqs, 0

	.section .text.window.net_tx, "ax"
	.globl net_tx_isr
net_tx_isr:                     /* NET_TX_VECTOR */
	TIMED_ISR net_tx_irqs, 0

	.data
	.balign 8
	.globl hlt_timer_irqs
hlt_timer_irqs:
	.quad 0
	.globl hlt_executed
hlt_executed:                   /* hlt instructions run, spurious wakeups included */
	.quad 0
	.globl kick_irqs, race_done, race_eoi_cost, race_irqs_a, race_irqs_b, race_at_a, race_at_b
kick_irqs:                      /* kick interrupts taken (vector 0x50) */
	.quad 0
race_done:                      /* set by the kicker when its last kick is settled */
	.quad 0
race_irqs_a:                    /* ipi-race: kick A and kick B interrupts taken, each followed */
	.quad 0                 /* by the TSC at which its handler last ran (race_eoi: 8(%rsi)) */
race_at_a:
	.quad 0
race_irqs_b:
	.quad 0
race_at_b:
	.quad 0
race_eoi_cost:                  /* TSC cycles its last EOI exit took, re-entry included */
	.quad 0

	.data
	.balign 8
	.globl cli_window_irqs, cli_window_masked_irqs, cli_window_at_sti, cli_window_windows, cli_window_masked_rip
cli_window_irqs:                /* cli-window: interrupts taken */
	.quad 0
cli_window_masked_irqs:         /* of them, taken with IF=0 (inside cli .. the sti's shadow) */
	.quad 0
cli_window_at_sti:              /* of them, pending across a window: taken right after its sti */
	.quad 0
cli_window_windows:             /* cli windows run */
	.quad 0
cli_window_masked_rip:          /* the first interrupted RIP of a masked one (0: none) */
	.quad 0

	.data
	.balign 8
	.globl dev_irqs, net_rx_irqs, net_tx_irqs, dev_isr_tsc, dev_ack_reg, dev_ack_val
dev_irqs:                       /* edu interrupts taken in the current op */
	.quad 0
net_rx_irqs:                    /* virtio-net receive-queue interrupts */
	.quad 0
net_tx_irqs:                    /* virtio-net transmit-queue interrupts */
	.quad 0
dev_isr_tsc:                    /* u64[DEV_MAX_SAMPLES]: TSC at handler entry, per interrupt */
	.quad 0
dev_ack_reg:                    /* edu: address of the interrupt acknowledge register (BAR0 + 0x64) */
	.quad 0
dev_ack_val:                    /* edu: the bits the op raises */
	.quad 0
