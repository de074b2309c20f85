"""Networks: the student generators and the frozen VGG-19 teacher."""

from .student import TAP_NAMES, StudentNet, count_parameters
from .teacher import TEACHER_TAPS, VGGTeacher, load_teacher

__all__ = ["TAP_NAMES", "TEACHER_TAPS", "StudentNet", "VGGTeacher", "count_parameters",
           "load_teacher"]
