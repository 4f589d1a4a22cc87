# benchbus A/B boot with trial boots and rollback (U-Boot hush script; mkimage -T script -d benchbus-boot.cmd boot.scr).
# The update-agent (services/update-agent/benchbus_update/slots.py) keeps these variables in U-Boot's environment:
#   bb_slot bb_good bb_trial bb_tries bb_max_tries bb_invalid
# Here, before Linux starts: a slot on trial gets at most bb_max_tries boots. When they are used up without the
# agent confirming the update (it clears bb_trial once every service reported ready), boot returns to bb_good and
# the failed slot is marked invalid, so a broken image can never loop the robot.
if test -z "${bb_good}"; then setenv bb_good a; fi
if test -z "${bb_slot}"; then setenv bb_slot ${bb_good}; fi
if test -z "${bb_max_tries}"; then setenv bb_max_tries 1; fi
if test -z "${bb_tries}"; then setenv bb_tries 0; fi

if test -n "${bb_trial}"; then
    if test ${bb_tries} -ge ${bb_max_tries}; then
        echo "benchbus: trial of slot ${bb_trial} not confirmed after ${bb_tries} boot(s); back to ${bb_good}"
        setenv bb_invalid "${bb_invalid} ${bb_trial}"
        setenv bb_slot ${bb_good}
        setenv bb_trial
        setenv bb_tries 0
    else
        setexpr bb_tries ${bb_tries} + 1
        echo "benchbus: trial boot ${bb_tries}/${bb_max_tries} of slot ${bb_trial}"
    fi
    saveenv
fi

# Never boot a slot marked invalid (a write in progress, a failed trial).
for bad in ${bb_invalid}; do
    if test "${bad}" = "${bb_slot}"; then
        echo "benchbus: slot ${bb_slot} is invalid; booting ${bb_good}"
        setenv bb_slot ${bb_good}
        saveenv
    fi
done

if test "${bb_slot}" = "b"; then setenv bb_root /dev/mmcblk0p3; else setenv bb_root /dev/mmcblk0p2; fi
setenv bootargs "${bootargs} root=${bb_root} rootwait ro"
load mmc 0:1 ${kernel_addr_r} zImage
bootz ${kernel_addr_r} - ${fdt_addr}
