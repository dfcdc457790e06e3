/* spindle_jump_fcontext: Boost.Context 1.74's jump_fcontext (x86_64 SysV)
 * with the same frame layout and transfer_t ABI, with two changes:
 *
 * 1. It leaves through `ret` instead of `jmp *%r8`. Why: the `call` into
 * the switch pushes a return-stack-buffer entry that a `jmp` never pops,
 * so every return the resumed fiber makes afterwards is predicted one frame
 * off and mispredicts, all the way up its call chain. With `ret`, the
 * entry is consumed; when both fibers switched from the same call site
 * (the runtime has one or two) even that ret is predicted, and so are the
 * returns above it as long as the two call chains agree.
 *
 * 2. It neither saves nor restores MXCSR and the x87 control word (what
 * Boost builds with BOOST_USE_TSX do): those four instructions were about a
 * third of a yield. The floating-point environment is therefore the worker
 * thread's, as in Go and tokio: a fiber that changes the rounding mode or
 * exception masks must restore them before it suspends. The slots stay in
 * the frame, so make_fcontext's layout is unchanged.
 *
 * Figures for both: docs/decisions/0003-context-switch.md "Figures".
 *
 * Frame (0x40 bytes at the saved context pointer, as make_fcontext builds
 * it): 0x0 MXCSR, 0x4 x87 CW (both unused here), 0x8 r12, 0x10 r13,
 * 0x18 r14, 0x20 r15, 0x28 rbx, 0x30 rbp, 0x38 return address.
 */
    .text
    .globl spindle_jump_fcontext
    .type spindle_jump_fcontext,@function
    .align 16
spindle_jump_fcontext:
    leaq  -0x38(%rsp), %rsp
    movq  %r12, 0x8(%rsp)
    movq  %r13, 0x10(%rsp)
    movq  %r14, 0x18(%rsp)
    movq  %r15, 0x20(%rsp)
    movq  %rbx, 0x28(%rsp)
    movq  %rbp, 0x30(%rsp)
    movq  %rsp, %rax
    movq  %rdi, %rsp
    movq  0x8(%rsp), %r12
    movq  0x10(%rsp), %r13
    movq  0x18(%rsp), %r14
    movq  0x20(%rsp), %r15
    movq  0x28(%rsp), %rbx
    movq  0x30(%rsp), %rbp
    leaq  0x38(%rsp), %rsp
    movq  %rsi, %rdx
    movq  %rax, %rdi
    ret
    .size spindle_jump_fcontext,.-spindle_jump_fcontext
    .section .note.GNU-stack,"",%progbits
