divert(-1)
# sendmail mailer definition for blackpony-mailer, the outbound side of
# blackpony. Install as /usr/share/sendmail/cf/mailer/blackpony.m4 and add
#
#     `MAILER(smtp)dnl'
#     `MAILER(blackpony)dnl'
#     `FEATURE(mailertable)dnl'   (before the two lines above)
#
# to sendmail.mc, then route remote mail through it in /etc/mail/mailertable:
#
#     .    blackpony:%1
#
# so $h is the recipient's domain (the mailer finds the MX itself).
# The flags and rulesets are those of the stock esmtp mailer; A= has $h and
# no $u, so sendmail speaks SMTP to the program over a pipe. U= is the user
# the program runs as: the owner of the host key and of /var/lib/blackpony
# (without U= it would be sendmail's DefaultUser, mail:mail on Debian).
# The example lines above are quoted: sendmail's cf.m4 turns m4 comments
# off, so unquoted macro calls here would be expanded.
divert(0)dnl
ifdef(`BLACKPONY_MAILER_PATH',, `define(`BLACKPONY_MAILER_PATH', `/usr/local/sbin/blackpony-mailer')')dnl
ifdef(`BLACKPONY_MAILER_ARGS',, `define(`BLACKPONY_MAILER_ARGS', `blackpony-mailer $h')')dnl
ifdef(`BLACKPONY_MAILER_USER',, `define(`BLACKPONY_MAILER_USER', `blackpony:blackpony')')dnl
MAILER_DEFINITIONS
Mblackpony,	P=BLACKPONY_MAILER_PATH, F=mDFMuXa, S=EnvFromSMTP/HdrFromSMTP, R=EnvToSMTP,
		E=\r\n, L=990, T=DNS/RFC822/SMTP, U=BLACKPONY_MAILER_USER, A=BLACKPONY_MAILER_ARGS
